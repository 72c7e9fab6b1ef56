"""Send one message to many connections, encoding its frame once."""

from __future__ import annotations

from typing import Iterable

from ..frames import FIN, frame_header
from .connection import WebSocket

__all__ = ["broadcast"]


def broadcast(connections: Iterable[WebSocket], message: str | bytes | bytearray | memoryview) -> int:
    """Write ``message`` to every open connection now, without awaiting any of them.

    Server-side connections without an extension share one encoded frame;
    masked (client-side) or compressed connections encode their own. A
    connection whose write buffer is over its high-water mark is skipped for
    this message, so one slow receiver never delays or bloats the others;
    the return value counts the connections the message was written to.
    """
    if isinstance(message, str):
        payload, opcode = message.encode("utf-8"), 0x1
    else:
        payload, opcode = bytes(message), 0x2
    frame: bytes | None = None
    sent = 0
    for ws in connections:
        if not ws.is_open or ws._writing_paused:
            continue
        core = ws._core
        if core.is_client or core.extensions:
            core.send(message)
            ws._flush()
        else:
            if frame is None:
                frame = frame_header(FIN | opcode, len(payload)) + payload
            ws._transport.write(frame)
        sent += 1
    return sent
