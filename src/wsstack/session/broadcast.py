"""One message to many connections, each frame encoded once per kind of connection.

The rule, for every transport: a server-side connection without extensions
gets the one shared frame; server-side connections that negotiated
permessage-deflate without server context takeover share one compressed
frame per compression setting (a message is compressed once, not once per
receiver); client-side (masked) connections and compressed ones that keep
their context encode their own. A connection whose write buffer is over its
limit is skipped for this message, so one slow receiver never delays or
bloats the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ..connection import Connection
from ..frames import FIN, Opcode, frame_header
from ..writer import payload_of

__all__ = ["SharedFrames", "Broadcastable", "broadcast"]


class SharedFrames:
    """The frames of one broadcast message, built as receivers need them."""

    __slots__ = ("message", "_payload", "_opcode", "_frames")

    def __init__(self, message: str | bytes | bytearray | memoryview) -> None:
        if isinstance(message, str):
            self._payload, self._opcode = message.encode("utf-8"), Opcode.TEXT
        else:
            # The check every send makes (TypeError for an int, a dict...), with the same words.
            self._payload, self._opcode = payload_of(message, "broadcast()"), Opcode.BINARY
        self.message = message
        self._frames: dict[object, bytes] = {}

    def frame_for(self, core: Connection) -> bytes:
        """The bytes that carry the message on ``core``'s connection (which must be open)."""
        key = _sharing_key(core)
        if key is None:
            core.send(self.message)
            return core.data_to_send()
        frame = self._frames.get(key)
        if frame is None:
            rsv, data = 0, self._payload
            for extension in core.extensions:
                bits, data = extension.encode(data)
                rsv |= bits
            frame = self._frames[key] = frame_header(FIN | rsv | self._opcode, len(data)) + data
        return frame


def _sharing_key(core: Connection) -> object | None:
    """Connections with equal keys get byte-identical frames; ``None``: encode for this one alone."""
    if core.is_client:
        return None
    if not core.extensions:
        return ()
    keys = tuple(extension.shared_encoding() for extension in core.extensions)
    return None if None in keys else keys


class Broadcastable(Protocol):
    """A transport's connection, as ``broadcast`` sees it."""

    def write_shared(self, frames: SharedFrames) -> bool:
        """Write the message now unless the connection is closed or its write buffer is full."""
        ...


def broadcast(connections: Iterable[Broadcastable], message: str | bytes | bytearray | memoryview) -> int:
    """Write ``message`` to every open connection now, waiting for none; how many it was written to.

    Server-side connections share encoded frames and a connection whose
    write buffer is full is skipped (see this module's rule). ``connections``
    is copied first, so a set that connections join and leave meanwhile (a
    server's ``connections``) may be passed as it is.
    """
    frames = SharedFrames(message)
    return sum(1 for ws in list(connections) if ws.write_shared(frames))
