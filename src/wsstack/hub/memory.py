"""The hub's default backend: one process, no dependency.

Publishing delivers at once; nothing crosses processes. A bounded history
per topic (``history=N``, the last N messages) mirrors the Streams
backend's, so an application written against one runs on the other.
"""

from __future__ import annotations

from collections import deque

from ..session import Message
from .base import Deliver

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Topics within this process only (see the module)."""

    delivers_own = False

    def __init__(self, history: int = 0) -> None:
        if history < 0:
            raise ValueError(f"MemoryBackend: history must be >= 0, got {history}")
        self._history = history
        self._kept: dict[str, deque[Message]] = {}

    async def start(self, deliver: Deliver) -> None:
        """Nothing to connect to."""

    async def join(self, topic: str) -> None:
        """Every topic of this process is joined already."""

    async def leave(self, topic: str) -> None:
        """Nothing to release: the history stays."""

    async def publish(self, topic: str, message: Message) -> None:
        """Keep the message for ``history`` (the hub has delivered it)."""
        if self._history:
            kept = self._kept.get(topic)
            if kept is None:
                kept = self._kept[topic] = deque(maxlen=self._history)
            kept.append(message)

    async def history(self, topic: str, count: int) -> list[Message]:
        """The last ``count`` messages published to ``topic`` (at most ``history`` are kept)."""
        kept = self._kept.get(topic, ())
        return list(kept)[-count:] if count > 0 else []

    async def close(self) -> None:
        """Drop the history."""
        self._kept.clear()
