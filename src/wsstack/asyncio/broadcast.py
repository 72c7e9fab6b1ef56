"""Send one message to many connections, encoding its frame once per kind of connection."""

from __future__ import annotations

from collections.abc import Iterable

from ..frames import FIN, frame_header
from .connection import WebSocket

__all__ = ["broadcast"]


def broadcast(connections: Iterable[WebSocket], message: str | bytes | bytearray | memoryview) -> int:
    """Write ``message`` to every open connection now, without awaiting any of them.

    Server-side connections share encoded frames: one for every connection
    without extensions, and one per compression setting among connections
    that negotiated permessage-deflate without server context takeover (so
    a message is compressed once, not once per receiver). Client-side
    (masked) connections and compressed ones that keep context encode their
    own. A connection whose write buffer is over its high-water mark is
    skipped for this message, so one slow receiver never delays or bloats
    the others; the return value counts the connections written to.
    """
    if isinstance(message, str):
        payload, opcode = message.encode("utf-8"), 0x1
    else:
        payload, opcode = bytes(message), 0x2
    frames: dict[object, bytes] = {}
    sent = 0
    for ws in connections:
        if not ws.is_open or ws._writing_paused:
            continue
        core = ws._core
        key = _sharing_key(ws)
        if key is None:
            core.send(message)
            ws._flush()
        else:
            frame = frames.get(key)
            if frame is None:
                rsv, data = 0, payload
                for extension in core.extensions:
                    bits, data = extension.encode(data)
                    rsv |= bits
                frame = frames[key] = frame_header(FIN | rsv | opcode, len(data)) + data
            ws._transport.write(frame)
        sent += 1
    return sent


def _sharing_key(ws: WebSocket) -> object | None:
    """Connections with equal keys get byte-identical frames; ``None``: encode for this one alone."""
    core = ws._core
    if core.is_client:
        return None
    if not core.extensions:
        return ()
    keys = tuple(extension.shared_encoding() for extension in core.extensions)
    return None if None in keys else keys
