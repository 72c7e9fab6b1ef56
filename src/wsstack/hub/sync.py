"""The hub for the blocking transport: a ``Hub`` on an event loop of its own, on a thread of its own.

That thread owns the backend's Redis connections; the calls below block
the calling thread until the loop has done the work. Delivery calls the
sync ``WebSocket.write_shared`` from the hub's thread, which is safe: every
method of that class takes the connection's lock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Set
from typing import Any, TypeVar

from ..session import Message
from .base import Backend
from .hub import Hub
from .local import Subscriber

__all__ = ["SyncHub"]

T = TypeVar("T")


class SyncHub:
    """``Hub``'s calls, blocking, for threads (see the module)."""

    def __init__(self, backend: Backend | None = None, timeout: float | None = 30.0) -> None:
        self.hub = Hub(backend)
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wsstack-hub", daemon=True)

    def start(self) -> None:
        """Start the hub's thread and connect the backend (``HubUnavailable`` when it cannot)."""
        self._thread.start()
        try:
            self._call(self.hub.start())
        except BaseException:
            self._stop_loop()
            raise

    def subscribe(self, ws: Subscriber, topic: str) -> None:
        """Block until ``ws`` receives ``topic``'s messages (see ``Hub.subscribe``)."""
        self._call(self.hub.subscribe(ws, topic))

    def unsubscribe(self, ws: Subscriber, topic: str) -> None:
        """See ``Hub.unsubscribe``; done on the hub's thread before this returns."""
        self._call(self._unsubscribe(ws, topic))

    def subscribers(self, topic: str) -> Set[Subscriber]:
        """See ``Hub.subscribers``."""
        return self._call(self._subscribers(topic))

    def publish(self, topic: str, message: str | bytes | bytearray | memoryview) -> None:
        """Block until the backend took ``message`` (see ``Hub.publish``, ``HubUnavailable`` included)."""
        self._call(self.hub.publish(topic, message))

    def history(self, topic: str, count: int) -> list[Message]:
        """See ``Hub.history``."""
        return self._call(self.hub.history(topic, count))

    def close(self) -> None:
        """Close the hub and stop its thread."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self.hub.close())
        finally:
            self._stop_loop()

    def __enter__(self) -> SyncHub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------- internals

    async def _unsubscribe(self, ws: Subscriber, topic: str) -> None:
        self.hub.unsubscribe(ws, topic)

    async def _subscribers(self, topic: str) -> Set[Subscriber]:
        return self.hub.subscribers(topic)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
