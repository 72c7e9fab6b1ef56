"""RFC 6455 frames: opcodes, the Frame value, serialization and the incremental parser."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Opcode", "Frame"]


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as it came off the wire (payload unmasked, and decompressed where an extension applies)."""

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
