"""RFC 6455 frames: the bits of the first header byte, the Frame value, close payloads.

The rule it keeps: this is the one definition of the opcodes and the
header bits (§5.2); the rest of the core names them from here (the C
scanner and its Python twin in ``speedups`` check the same values in their
own loops). Parsing and serialization live in :mod:`wsstack.speedups`
(``scan_frames``, ``serialize_frame``), where the C path pays off: the
scanner walks a whole read per call, and a frame is written with one
allocation. This module holds what both directions share, with the writer
behind a keyword-friendly name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import InvalidPayloadData, ProtocolError
from .speedups import frame_header
from .speedups import serialize_frame as _serialize_frame

__all__ = [
    "Opcode",
    "Frame",
    "FIN",
    "RSV1",
    "RSV2",
    "RSV3",
    "RSV_BITS",
    "OPCODE_BITS",
    "CONTROL_BIT",
    "frame_header",
    "serialize_frame",
    "parse_close",
    "build_close",
    "is_sendable_close_code",
]

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10
#: The three reserved bits together: what an extension may define (§5.2, §9).
RSV_BITS = RSV1 | RSV2 | RSV3
#: Where the opcode sits in the first byte.
OPCODE_BITS = 0x0F
#: Set in every control opcode and in no data opcode (§5.5).
CONTROL_BIT = 0x08


class Opcode(enum.IntEnum):
    """The opcodes of §5.2; the others (0x3-0x7, 0xB-0xF) are reserved and fail the connection."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


@dataclass(slots=True)
class Frame:
    """One frame as it came off the wire: payload unmasked, and decompressed where an extension applies."""

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    @property
    def close_code(self) -> int | None:
        """A close frame's status code (1005 when it carried none); ``None`` for any other frame.

        A received close frame was checked before it was delivered, so this
        never fails on one; on a close frame built by hand with an invalid
        payload it raises ``ProtocolError``, as ``parse_close`` does.
        """
        if self.opcode != Opcode.CLOSE:
            return None
        return parse_close(self.payload)[0]

    @property
    def close_reason(self) -> str | None:
        """A close frame's reason (``""`` when it carried none); ``None`` for any other frame."""
        if self.opcode != Opcode.CLOSE:
            return None
        return parse_close(self.payload)[1]


def serialize_frame(first_byte: int, payload: bytes | bytearray | memoryview, mask_key: bytes | None = None) -> bytes:
    """Header and payload in one bytes object; the payload is masked when a key is given."""
    # The C function takes no keywords; this keeps ``mask_key=`` working for callers.
    return _serialize_frame(first_byte, payload, mask_key)


def is_sendable_close_code(code: int) -> bool:
    """Codes allowed in a close frame on the wire (RFC 6455 §7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received close frame; 1005 when it carried no code."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a one-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not is_sendable_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayloadData("close reason is not valid UTF-8") from None
    return code, reason


def build_close(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame we send; ``None`` sends an empty one."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_sendable_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    data = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason longer than 123 bytes")
    return data
