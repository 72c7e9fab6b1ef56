"""Send one message to many connections, encoding its frame once per kind of connection."""

from __future__ import annotations

from collections.abc import Iterable

from ..connection import Connection, State
from ..frames import FIN, frame_header
from .connection import WebSocket

__all__ = ["broadcast"]


def broadcast(connections: Iterable[WebSocket], message: str | bytes | bytearray | memoryview) -> int:
    """Write ``message`` to every open connection now, blocking on none of them.

    Server-side connections share encoded frames: one for every connection
    without extensions, and one per compression setting among connections
    that negotiated permessage-deflate without server context takeover.
    Client-side (masked) connections and compressed ones that keep context
    encode their own. A connection whose unsent output is over
    ``Options.write_limit`` (its peer reads slower than it is written to) is
    skipped for this message, so one slow receiver never delays or bloats
    the others; the return value counts the connections written to. Safe to
    call from any thread, while other threads send on the same connections.
    """
    if isinstance(message, str):
        payload, opcode = message.encode("utf-8"), 0x1
    else:
        payload, opcode = bytes(message), 0x2
    frames: dict[object, bytes] = {}
    sent = 0
    # A copy, taken at once under the interpreter lock: ``Server.connections``
    # may be passed as it is while handler threads join and leave.
    for ws in list(connections):
        core = ws._core
        transport = ws._transport
        with ws._lock:
            if core.state is not State.OPEN or transport.buffered > ws._write_limit:
                continue
            key = _sharing_key(core)
            if key is None:
                core.send(message)
                transport.write(core.data_to_send())
            else:
                frame = frames.get(key)
                if frame is None:
                    rsv, data = 0, payload
                    for extension in core.extensions:
                        bits, data = extension.encode(data)
                        rsv |= bits
                    frame = frames[key] = frame_header(FIN | rsv | opcode, len(data)) + data
                transport.write(frame)
        sent += 1
    return sent


def _sharing_key(core: Connection) -> object | None:
    """Connections with equal keys get byte-identical frames; ``None``: encode for this one alone."""
    if core.is_client:
        return None
    if not core.extensions:
        return ()
    keys = tuple(extension.shared_encoding() for extension in core.extensions)
    return None if None in keys else keys
