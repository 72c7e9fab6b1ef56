"""The read-only state every transport's connection class shows, read from its core."""

from __future__ import annotations

from ..connection import Connection, State

__all__ = ["CoreView", "Message"]

#: What ``recv()`` returns for a message: ``str`` for text, ``bytes`` for binary.
Message = str | bytes


class CoreView:
    """Properties read straight from the connection's core, shared by every transport's ``WebSocket``.

    Every transport's ``WebSocket`` has the same calls: ``recv()`` returns
    a ``Message`` and ``None`` once the connection is closed;
    ``recv_frame()`` switches the connection to frame mode for good and
    returns every frame as it comes, control frames included.
    """

    __slots__ = ()

    _core: Connection

    @property
    def is_open(self) -> bool:
        """The handshake is done and no close frame has been sent or received."""
        return self._core.state is State.OPEN

    @property
    def close_code(self) -> int | None:
        """The peer's close code; ours when we failed the connection; 1006 when it was lost."""
        return self._core.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with ``close_code``; empty when there was none."""
        return self._core.close_reason

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the handshake agreed on, ``None`` for none."""
        return self._core.subprotocol

    @property
    def extensions(self) -> list[str]:
        """The names of the extensions the handshake agreed on, in their order."""
        return [extension.name for extension in self._core.extensions]
