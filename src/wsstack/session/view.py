"""The read-only state every transport's connection class shows, read from its session."""

from __future__ import annotations

from ..connection import State
from .websocket import WebSocketSession

__all__ = ["CoreView"]


class CoreView:
    """Properties read straight from the session's core, shared by every transport's ``WebSocket``."""

    __slots__ = ()

    _session: WebSocketSession

    @property
    def is_open(self) -> bool:
        return self._session.core.state is State.OPEN

    @property
    def close_code(self) -> int | None:
        """The peer's close code; ours when we failed the connection; 1006 when it was lost."""
        return self._session.core.close_code

    @property
    def close_reason(self) -> str:
        return self._session.core.close_reason

    @property
    def subprotocol(self) -> str | None:
        return self._session.core.subprotocol

    @property
    def extensions(self) -> list[str]:
        return [extension.name for extension in self._session.core.extensions]
