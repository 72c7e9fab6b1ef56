"""Pure-Python speedups: the reference behaviour, and the fallback without C.

Everything here has a twin in ``_cspeedups`` with the same names, signatures
and results; the tests compare the two on random input, bad arguments
included.  Import ``wsstack.speedups`` instead of either module: it picks
the C one when it is built.

C reads a buffer as its bytes, whatever the item format of the exporter
(a ``memoryview.cast("I")``, an ``array.array("H")``), and cannot read a
non-contiguous one at all.  So every function here reads buffers through
``_readable`` or ``_writable``, which give the same bytes and the same
errors, and takes integers the way C's ``PyLong_As*`` do (``__index__``,
never ``float``), checking them in the order C does.  The functions C
implements as fast calls take positional arguments only, like C.
"""

from __future__ import annotations

import codecs
import functools
import operator
import os
import struct

__all__ = [
    "ERR_CONTROL_FRAGMENTED",
    "ERR_CONTROL_TOO_LONG",
    "ERR_FRAME_TOO_BIG",
    "ERR_LENGTH_HIGH_BIT",
    "ERR_MASK_FORBIDDEN",
    "ERR_MASK_REQUIRED",
    "ERR_RESERVED_OPCODE",
    "ERR_RSV",
    "IMPLEMENTATION",
    "FrameScanner",
    "Utf8Validator",
    "apply_mask",
    "apply_mask_inplace",
    "frame_header",
    "is_utf8",
    "scan_frames",
    "mask_key",
    "reset_mask_keys",
    "serialize_client_frame",
    "serialize_client_text",
    "serialize_frame",
    "serialize_text",
]

IMPLEMENTATION = "python"

#: Buffers, read as their bytes; any C-contiguous buffer will do at run time.
BytesLike = bytes | bytearray | memoryview

# FrameScanner error codes, also defined in csrc/wsstack.h.
ERR_RESERVED_OPCODE = 1
ERR_RSV = 2
ERR_MASK_REQUIRED = 3
ERR_MASK_FORBIDDEN = 4
ERR_CONTROL_TOO_LONG = 5
ERR_CONTROL_FRAGMENTED = 6
ERR_LENGTH_HIGH_BIT = 7
ERR_FRAME_TOO_BIG = 8

_RSV_BITS = 0x70

_index = operator.index


# ---- arguments -----------------------------------------------------------------


def _readable(data: BytesLike) -> BytesLike:
    """The bytes of the buffer ``data``, one item per byte, without a copy.

    ``memoryview()`` asks an exporter for its buffer the way C's fallback
    does (csrc/fastcall.c, ``get_bytes``), so both raise what the exporter
    raises for a non-buffer, and BufferError for a non-contiguous buffer
    (exporters' own complaints differ: numpy raises ValueError).  The
    result of a bytes or bytearray is the object itself.
    """
    if type(data) is bytes or type(data) is bytearray:
        return data
    view = memoryview(data)
    if not view.c_contiguous:
        # C's PyBuffer_IsContiguous calls any empty buffer contiguous
        # (memoryview does not, for a strided one): there is nothing to read.
        if view.nbytes:
            raise BufferError("a C-contiguous buffer is required")
        return b""
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def _writable(buf: bytearray | memoryview) -> bytearray | memoryview:
    """The bytes of ``buf`` for writing: read-only is a TypeError, then as ``_readable``."""
    if type(buf) is bytearray:
        return buf
    view = memoryview(buf)
    if view.readonly:
        raise TypeError("a writable buffer is required")
    if not view.c_contiguous:
        if view.nbytes:
            raise BufferError("a C-contiguous buffer is required")
        return bytearray()  # empty, as in _readable: nothing to write
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def _mask_key(key: BytesLike) -> bytes:
    """The masking key as 4 bytes; any buffer of 4 bytes is one."""
    if type(key) is not bytes:
        key = bytes(_readable(key))
    if len(key) != 4:
        raise ValueError("a mask key is 4 bytes")
    return key


def _first_byte(value: int) -> int:
    """A frame's first header byte, checked: it must fit in 8 bits."""
    value = _index(value)
    if not 0 <= value <= 255:
        raise ValueError("first_byte must be in range(256)")
    return value


def _rsv_bits(value: int) -> int:
    """``allowed_rsv``, checked: only RSV1-3 (0x70) may be set."""
    value = _index(value)
    if value & ~_RSV_BITS:
        raise ValueError(f"allowed_rsv takes only the bits 0x40, 0x20 and 0x10, not {value:#x}")
    return value


def _frame_limit(value: int | None) -> int | None:
    """``max_frame_size``, checked: None (no limit) or an int of at least 0."""
    if value is None:
        return None
    value = _index(value)
    if value < 0:
        raise ValueError("max_frame_size must be None or at least 0")
    return value


# ---- masking -----------------------------------------------------------------


# Converting between bytes and int costs about 0.6 ns a byte each way, so
# from this size on it is faster to mask the four interleaved lanes (bytes
# 0, 4, 8...; 1, 5, 9...) each with one bytes.translate table.
_LANES_MIN = 1024
_IDENTITY = int.from_bytes(bytes(range(256)), "little")


@functools.lru_cache(maxsize=256)
def _xor_table(k: int) -> bytes:
    """The bytes.translate table that XORs every byte with ``k``."""
    return (_IDENTITY ^ int.from_bytes(bytes([k]) * 256, "little")).to_bytes(256, "little")


def _xor_lanes(buf: bytearray, key: BytesLike, offset: int) -> None:
    for lane in range(4):
        buf[lane::4] = buf[lane::4].translate(_xor_table(key[(lane + offset) & 3]))


def apply_mask(data: BytesLike, key: bytes, offset: int = 0, /) -> bytes:
    """Return ``data`` XORed with the repeated 4-byte ``key`` (RFC 6455 §5.3).

    ``offset`` is the position of ``data[0]`` within the masked payload
    (only ``offset % 4`` matters), so a payload that arrives in pieces can
    be unmasked piece by piece.
    """
    if type(offset) is not int:
        offset = _index(offset)
    if type(key) is not bytes or len(key) != 4:
        key = _mask_key(key)
    if type(data) is not bytes:
        data = _readable(data)
    n = len(data)
    if n >= _LANES_MIN:
        out = bytearray(data)
        _xor_lanes(out, key, offset)
        return bytes(out)
    phase = offset & 3
    if phase:
        key = key[phase:] + key[:phase]
    # One big-integer XOR runs in C inside CPython, far faster than a loop
    # over bytes; the byte order is irrelevant as long as both sides agree.
    stream = (key * ((n >> 2) + 1))[:n]
    masked = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return masked.to_bytes(n, "little")


def apply_mask_inplace(buf: bytearray | memoryview, key: bytes, offset: int = 0) -> None:
    """Mask (or unmask) the writable buffer ``buf`` in place; see apply_mask."""
    if type(offset) is not int:
        offset = _index(offset)
    key = _mask_key(key)
    view = _writable(buf)
    if type(view) is bytearray and len(view) >= _LANES_MIN:
        _xor_lanes(view, key, offset)
    else:
        view[:] = apply_mask(view, key, offset)


# ---- frames --------------------------------------------------------------------

_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack


def frame_header(first_byte: int, length: int, mask_key: bytes | None = None) -> bytes:
    """The header of a frame whose first byte (FIN | RSV | opcode) is ``first_byte``."""
    mask_bit = 0x80 if mask_key is not None else 0
    if length < 126:
        header = bytes((first_byte, length | mask_bit))
    elif length < 65536:
        header = _pack_16(first_byte, 126 | mask_bit, length)
    else:
        header = _pack_64(first_byte, 127 | mask_bit, length)
    return header + mask_key if mask_key is not None else header


def serialize_frame(first_byte: int, payload: BytesLike, mask_key: bytes | None = None, /) -> bytes:
    """Header and payload in one bytes object; the payload is masked when a key is given."""
    if type(first_byte) is not int or not 0 <= first_byte <= 255:
        first_byte = _first_byte(first_byte)
    if mask_key is not None and (type(mask_key) is not bytes or len(mask_key) != 4):
        mask_key = _mask_key(mask_key)
    if type(payload) is not bytes:
        payload = _readable(payload)
    if mask_key is None:
        return frame_header(first_byte, len(payload)) + payload
    return frame_header(first_byte, len(payload), mask_key) + apply_mask(payload, mask_key)


def serialize_text(first_byte: int, text: str, mask_key: bytes | None = None, /) -> bytes:
    """``serialize_frame`` of ``text``'s UTF-8: C builds an ASCII text's frame without encoding it first."""
    if type(first_byte) is not int or not 0 <= first_byte <= 255:
        first_byte = _first_byte(first_byte)
    if not isinstance(text, str):
        raise TypeError(f"serialize_text() takes str, not {type(text).__name__}")
    if mask_key is not None and (type(mask_key) is not bytes or len(mask_key) != 4):
        mask_key = _mask_key(mask_key)
    return serialize_frame(first_byte, text.encode(), mask_key)


# ---- masking keys for client frames ----------------------------------------------

#: Keys drawn from os.urandom in batches of 1,024 (RFC 6455 §5.3 asks for
#: unpredictable keys); a forked child starts a batch of its own.
_KEY_BATCH = 4096
_key_pool = b""
_key_pos = 0


def mask_key() -> bytes:
    """A fresh masking key, from the pool the client frames draw from."""
    global _key_pool, _key_pos
    pos = _key_pos
    if pos >= len(_key_pool):
        _key_pool = os.urandom(_KEY_BATCH)
        pos = 0
    _key_pos = pos + 4
    return _key_pool[pos : pos + 4]


def reset_mask_keys() -> None:
    """Forget the keys drawn so far (in a forked child, which must not send its parent's)."""
    global _key_pool, _key_pos
    _key_pool, _key_pos = b"", 0


def serialize_client_frame(first_byte: int, payload: BytesLike, /) -> bytes:
    """``serialize_frame`` masked with a fresh key."""
    if type(first_byte) is not int or not 0 <= first_byte <= 255:
        first_byte = _first_byte(first_byte)
    if type(payload) is not bytes:
        payload = _readable(payload)
    return serialize_frame(first_byte, payload, mask_key())


def serialize_client_text(first_byte: int, text: str, /) -> bytes:
    """``serialize_text`` masked with a fresh key."""
    if type(first_byte) is not int or not 0 <= first_byte <= 255:
        first_byte = _first_byte(first_byte)
    if not isinstance(text, str):
        raise TypeError(f"serialize_client_text() takes str, not {type(text).__name__}")
    return serialize_frame(first_byte, text.encode(), mask_key())


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=reset_mask_keys)


# ---- UTF-8 -------------------------------------------------------------------

# The state between Utf8Validator.feed calls: ACCEPT, REJECT, or, inside a
# code point split between calls, the number of continuation bytes still
# missing (bits 0-7) and the range the next byte must fall in (lo in bits
# 8-15, hi in bits 16-23; lo >= 0x80, so never 0 or 1).  csrc/utf8.c knows
# the same states under another encoding, made for speed.
_ACCEPT = 0
_REJECT = 1


def _pending(missing: int, lo: int, hi: int) -> int:
    return missing | lo << 8 | hi << 16


def _step(state: int, byte: int) -> int:
    """Advance the state by one byte, rejecting as soon as no valid text can follow.

    The narrowed second-byte ranges after E0, ED, F0 and F4 are what exclude
    overlongs, surrogates and code points above U+10FFFF (RFC 3629 §4).
    """
    if state == _ACCEPT:
        if byte < 0x80:
            return _ACCEPT
        if 0xC2 <= byte <= 0xDF:
            return _pending(1, 0x80, 0xBF)
        if 0xE0 <= byte <= 0xEF:
            return _pending(2, 0xA0 if byte == 0xE0 else 0x80, 0x9F if byte == 0xED else 0xBF)
        if 0xF0 <= byte <= 0xF4:
            return _pending(3, 0x90 if byte == 0xF0 else 0x80, 0x8F if byte == 0xF4 else 0xBF)
        return _REJECT
    if not (state >> 8) & 0xFF <= byte <= (state >> 16) & 0xFF:
        return _REJECT
    missing = (state & 0xFF) - 1
    return _pending(missing, 0x80, 0xBF) if missing else _ACCEPT


class Utf8Validator:
    """Incremental UTF-8 validation of a text message that arrives in pieces.

    The bulk of each piece goes through CPython's strict UTF-8 decoder, which
    enforces RFC 3629 exactly.  Its incremental mode is not trusted with the
    bytes of a code point that straddles two pieces: it holds back a
    truncated surrogate such as ``ED A0`` instead of rejecting it, and a
    message must fail as soon as its bytes cannot become valid.  Those few
    bytes go through ``_step`` instead.
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _ACCEPT

    def reset(self) -> None:
        """Forget everything fed so far, to validate a new message."""
        self._state = _ACCEPT

    @property
    def at_boundary(self) -> bool:
        """True if everything fed so far is complete, valid UTF-8."""
        return self._state == _ACCEPT

    def feed(self, data: BytesLike) -> bool:
        """Validate the next piece; False once the text is invalid (and from then on)."""
        state = self._state
        if state == _REJECT:
            return False
        view = memoryview(_readable(data))
        start = 0
        # Finish a code point left open by the previous piece.
        while state not in (_ACCEPT, _REJECT) and start < len(view):
            state = _step(state, view[start])
            start += 1
        if state == _ACCEPT and start < len(view):
            try:
                _, consumed = codecs.utf_8_decode(view[start:], "strict", False)
            except UnicodeDecodeError:
                state = _REJECT
            else:
                # The decoder held back the start of a code point that
                # continues in the next piece.
                for byte in view[start + consumed :]:
                    state = _step(state, byte)
                    if state == _REJECT:
                        break
        self._state = state
        return state != _REJECT


def is_utf8(data: BytesLike) -> bool:
    """True if ``data`` is complete, valid UTF-8 (RFC 3629)."""
    try:
        codecs.utf_8_decode(_readable(data), "strict", True)
    except UnicodeDecodeError:
        return False
    return True


# ---- frame scanner -------------------------------------------------------------


class FrameScanner:
    """Find, check and unmask every complete frame in a receive buffer.

    ``mask_required`` is True on the server side (every frame from a client
    must be masked) and False on the client side (no frame from a server may
    be).  ``allowed_rsv`` holds the RSV bits, as they sit in the first header
    byte (0x40, 0x20, 0x10), that negotiated extensions may set;
    ``max_frame_size`` limits the payload of one frame (None: no limit).
    Both can be changed after construction, because extensions and limits
    are settled after the scanner is made.
    """

    __slots__ = ("_allowed_rsv", "_max_frame_size", "mask_required")

    def __init__(
        self,
        *,
        mask_required: bool,
        allowed_rsv: int = 0,
        max_frame_size: int | None = None,
    ) -> None:
        self.mask_required = bool(mask_required)
        self.allowed_rsv = allowed_rsv
        self.max_frame_size = max_frame_size

    @property
    def allowed_rsv(self) -> int:
        return self._allowed_rsv

    @allowed_rsv.setter
    def allowed_rsv(self, value: int) -> None:
        self._allowed_rsv = _rsv_bits(value)

    @property
    def max_frame_size(self) -> int | None:
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value: int | None) -> None:
        self._max_frame_size = _frame_limit(value)

    def scan(self, data: BytesLike, pos: int) -> tuple[list[int | bytes], int, int]:
        """Walk the complete frames in ``data[pos:]`` with these settings; see ``scan_frames``."""
        return scan_frames(data, pos, self.mask_required, self._allowed_rsv, self._max_frame_size)


def scan_frames(
    data: BytesLike, pos: int, mask_required: bool, allowed_rsv: int, max_frame_size: int | None, /
) -> tuple[list[int | bytes], int, int]:
    """Walk the complete frames in ``data[pos:]``.

    Returns ``(frames, new_pos, error)``.  ``frames`` is flat, two items
    per frame: the first header byte, then the payload as new, unmasked
    ``bytes``; ``data`` itself is only read, so any buffer will do.
    ``new_pos`` is the offset just past the last frame returned; an
    incomplete frame after it is left for the next call.  ``error`` is 0,
    or the ERR_* code of the frame at ``new_pos``, reported as soon as the
    header bytes that show it have arrived.  Header checks run in this
    order: reserved opcode, RSV bits, control frame without FIN, control
    frame length, high bit of a 64-bit length, ``max_frame_size``, mask
    bit; a check that needs the extended length waits for it, and so do
    the checks after it.  ``mask_required`` is True on the server side;
    ``allowed_rsv`` holds the RSV bits negotiated extensions may set.
    """
    # The arguments are checked in C's order, so both refuse a bad call alike.
    if type(pos) is not int:
        pos = _index(pos)
    mask_required = bool(mask_required)
    allowed = allowed_rsv
    if type(allowed) is not int or allowed & ~_RSV_BITS:
        allowed = _rsv_bits(allowed)
    limit = max_frame_size
    if limit is not None and (type(limit) is not int or limit < 0):
        limit = _frame_limit(limit)
    if type(data) is not bytes:
        data = _readable(data)
    size = len(data)
    if not 0 <= pos <= size:
        raise ValueError(f"pos {pos} is outside the buffer (length {size})")
    frames: list[int | bytes] = []
    error = 0
    while size - pos >= 2:
        b0 = data[pos]
        b1 = data[pos + 1]
        opcode = b0 & 0x0F
        if 0x3 <= opcode <= 0x7 or opcode >= 0xB:
            error = ERR_RESERVED_OPCODE
            break
        if b0 & _RSV_BITS & ~allowed:
            error = ERR_RSV
            break
        if opcode >= 0x8:
            if not b0 & 0x80:
                error = ERR_CONTROL_FRAGMENTED
                break
            if b1 & 0x7F > 125:
                error = ERR_CONTROL_TOO_LONG
                break
        length = b1 & 0x7F
        if length == 126:
            header = 4
            if size - pos < header:
                break
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        elif length == 127:
            header = 10
            if size - pos < header:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if length >> 63:
                error = ERR_LENGTH_HIGH_BIT
                break
        else:
            header = 2
        if limit is not None and length > limit:
            error = ERR_FRAME_TOO_BIG
            break
        masked = b1 >> 7
        if masked != mask_required:
            error = ERR_MASK_FORBIDDEN if masked else ERR_MASK_REQUIRED
            break
        start = pos + header + 4 * masked
        end = start + length
        if end > size:
            break
        if masked:
            frames += (b0, apply_mask(data[start:end], bytes(data[start - 4 : start])))
        else:
            frames += (b0, bytes(data[start:end]))
        pos = end
    return frames, pos, error
