"""The topics of one process: which connections subscribed to which topic, and the fan-out to them.

Fan-out is ``broadcast``: each message is encoded once per kind of
connection and a connection whose write buffer is over its limit is skipped
for that message, so a slow subscriber never holds a topic back. Nothing
here awaits or locks; the hub calls it from its event loop only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..session import Broadcastable, Message, broadcast

__all__ = ["Subscriber", "LocalTopics"]


class Subscriber(Broadcastable, Protocol):
    """A connection as the hub sees it: either transport's ``WebSocket``."""

    def add_close_callback(self, callback: Callable[[Any], object]) -> None:
        """Have ``callback(ws)`` called once the connection is gone (at once if it is)."""
        ...


class LocalTopics:
    """Topic → subscribers and subscriber → topics, kept in step."""

    __slots__ = ("_subscribers", "_topics")

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._topics: dict[Subscriber, set[str]] = {}

    def add(self, ws: Subscriber, topic: str) -> bool:
        """Subscribe ``ws`` to ``topic``; whether ``ws`` is new to the hub (it needs a close callback)."""
        self._subscribers.setdefault(topic, set()).add(ws)
        topics = self._topics.get(ws)
        if topics is None:
            self._topics[ws] = {topic}
            return True
        topics.add(topic)
        return False

    def remove(self, ws: Subscriber, topic: str) -> None:
        """Unsubscribe ``ws`` from ``topic`` (nothing if it was not subscribed)."""
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(ws)
            if not subscribers:
                del self._subscribers[topic]
        topics = self._topics.get(ws)
        if topics is not None:
            topics.discard(topic)
            # A connection keeps its entry (and so its one close callback) until it closes.

    def forget(self, ws: Subscriber) -> list[str]:
        """Take ``ws`` out of every topic; the topics it was in."""
        topics = self._topics.pop(ws, set())
        for topic in topics:
            subscribers = self._subscribers[topic]  # kept in step with _topics
            subscribers.discard(ws)
            if not subscribers:
                del self._subscribers[topic]
        return sorted(topics)

    def has(self, topic: str) -> bool:
        """Whether any connection of this process is subscribed to ``topic``."""
        return topic in self._subscribers

    def subscribers(self, topic: str) -> frozenset[Subscriber]:
        """The connections subscribed to ``topic`` now."""
        return frozenset(self._subscribers.get(topic, ()))

    def deliver(self, topic: str, message: Message) -> int:
        """Write ``message`` to the topic's subscribers now (see the module's rule); how many got it."""
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            return 0
        return broadcast(subscribers, message)
