"""The hub: named topics that connections subscribe to, and ``publish`` that reaches them in every process.

The rules, whichever backend carries the messages:

- ``await hub.subscribe(ws, topic)`` returns once the backend receives the
  topic, so every message published after it returns (from any process)
  reaches ``ws``; a connection leaves all its topics when it closes.
- Local fan-out is ``broadcast``: one encoding per message and kind of
  connection, and a subscriber whose write buffer is over ``write_limit``
  is skipped for that message instead of slowing the topic down.
- With a Redis backend, a message published here reaches this process's
  subscribers through Redis like everybody else's, so all processes see one
  order per publisher. When Redis cannot take it, ``publish`` still writes
  it to this process's subscribers, then raises ``HubUnavailable``
  (``local_receivers`` says to how many): local delivery goes on while
  Redis is away, and the caller learns that other processes missed it.
- The hub belongs to one event loop; ``SyncHub`` puts one on a thread of
  its own for the blocking transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Set

from ..session import Message
from .base import Backend, HubUnavailable
from .local import LocalTopics, Subscriber
from .memory import MemoryBackend
from .wire import check_message

__all__ = ["Hub"]


class Hub:
    """Publish/subscribe over named topics for WebSocket connections (see this module's rules)."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend: Backend = MemoryBackend() if backend is None else backend
        self._local = LocalTopics()
        self._joined: set[str] = set()
        self._membership = asyncio.Lock()  # joins and leaves reach the backend one at a time, in order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect the backend; ``HubUnavailable`` when it cannot (after its retries, if configured)."""
        self._loop = asyncio.get_running_loop()
        await self.backend.start(self._local.deliver)

    async def subscribe(self, ws: Subscriber, topic: str) -> None:
        """Have ``ws`` receive every message published to ``topic`` from now on, until it closes."""
        if not isinstance(topic, str):
            raise TypeError(f"topic must be str, not {type(topic).__name__}")
        if self._loop is None:
            raise RuntimeError("the hub is not started: await hub.start() first")
        async with self._membership:
            if topic not in self._joined:
                await self.backend.join(topic)
                self._joined.add(topic)
            if self._local.add(ws, topic):
                ws.add_close_callback(self._closed)

    def unsubscribe(self, ws: Subscriber, topic: str) -> None:
        """Stop writing ``topic``'s messages to ``ws`` now (nothing if it was not subscribed)."""
        self._local.remove(ws, topic)
        self._release(topic)

    def subscribers(self, topic: str) -> Set[Subscriber]:
        """The connections of this process subscribed to ``topic``."""
        return self._local.subscribers(topic)

    async def publish(self, topic: str, message: str | bytes | bytearray | memoryview) -> None:
        """Send ``message`` to every subscriber of ``topic`` in every process.

        Returns once the backend took it (Redis answered). ``HubUnavailable``
        when it could not, after the message was written to this process's
        subscribers (see the module's rules).
        """
        message = check_message(message)
        if not self.backend.delivers_own:
            self._local.deliver(topic, message)
            await self.backend.publish(topic, message)
            return
        try:
            await self.backend.publish(topic, message)
        except HubUnavailable as exc:
            receivers = self._local.deliver(topic, message)
            raise HubUnavailable(f"{exc}; written to {receivers} local subscribers only", receivers) from exc

    async def history(self, topic: str, count: int) -> list[Message]:
        """The last ``count`` messages of ``topic``, oldest first (Streams and memory backends)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        return await self.backend.history(topic, count)

    async def close(self) -> None:
        """Stop the backend; the connections stay open, subscribed to nothing."""
        for task in list(self._pending):
            task.cancel()
        self._joined.clear()
        await self.backend.close()
        self._loop = None

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------- internals

    def _closed(self, ws: Subscriber) -> None:
        """A subscriber's close callback: its transport's thread may not be the hub's."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._forget, ws)
        except RuntimeError:
            pass  # the loop is closed: so is the hub

    def _forget(self, ws: Subscriber) -> None:
        for topic in self._local.forget(ws):
            self._release(topic)

    def _release(self, topic: str) -> None:
        """Leave ``topic`` on the backend once no local connection is subscribed to it."""
        if self._local.has(topic) or topic not in self._joined or self._loop is None:
            return
        task = self._loop.create_task(self._leave(topic))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _leave(self, topic: str) -> None:
        async with self._membership:
            # Someone may have subscribed again while this waited for the lock.
            if self._local.has(topic) or topic not in self._joined:
                return
            self._joined.discard(topic)
            await self.backend.leave(topic)
