"""C speedups through cffi: the same API as ``_pyspeedups``, backed by csrc/.

Importing this module raises ImportError when ``wsstack._speedups`` was not
built; ``wsstack.speedups`` then falls back to pure Python.

The C work is cheap next to the cost of reaching it: a cffi call takes about
150 ns, each ``ffi.from_buffer`` export about 100 ns more, and even looking
up ``ffi.release`` or ``lib.ws_scan`` 20-35 ns.  So the wrappers bind the
functions they use once, pass ``bytes`` straight through (cffi hands C a
pointer to the object's data, no copy), export only other buffers, and
release each export before returning (a bytearray with a live export cannot
be resized).

Measured on CPython 3.11, x86_64: with those savings C masking beats the
pure-Python code from 4 bytes up, and equals it below, so masking always
goes to C; the scanner wins from one frame up.  Only UTF-8 validation of
short pure-ASCII bytes is left to CPython (``bytes.isascii``), see below.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable

from . import _pyspeedups
from ._pyspeedups import (
    ERR_CONTROL_FRAGMENTED,
    ERR_CONTROL_TOO_LONG,
    ERR_FRAME_TOO_BIG,
    ERR_LENGTH_HIGH_BIT,
    ERR_MASK_FORBIDDEN,
    ERR_MASK_REQUIRED,
    ERR_RESERVED_OPCODE,
    ERR_RSV,
    BytesLike,
)
from ._speedups import ffi as _ffi  # type: ignore[import-not-found]
from ._speedups import lib as _lib

if sys.implementation.name != "cpython":
    # apply_mask fills a new bytes object in place, which is only sound with
    # CPython's object layout.  Other interpreters use the Python code.
    raise ImportError("wsstack's C speedups support CPython only")

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
    "is_utf8",
]

IMPLEMENTATION = "c"

# Bound once, with the C signatures (pointer arguments take bytes or cdata).
_from_buffer: Callable[..., object] = _ffi.from_buffer
_release: Callable[[object], None] = _ffi.release
_unpack: Callable[[object, int], list[int]] = _ffi.unpack
_mask_copy: Callable[[bytes, object, int, bytes, int], None] = _lib.ws_mask_copy
_mask_inplace: Callable[[object, int, bytes, int], None] = _lib.ws_mask_inplace
_utf8_validate: Callable[[int, object, int], int] = _lib.ws_utf8_validate
_scan: Callable[[object, int, int, bool, int, int, object, int], int] = _lib.ws_scan

_UTF8_ACCEPT: int = _lib.WS_UTF8_ACCEPT
_UTF8_REJECT: int = _lib.WS_UTF8_REJECT

# apply_mask's output: bytes(n) zero-fills it, which for a large payload is a
# whole extra pass over memory.  The C-API PyBytes_FromStringAndSize(NULL, n)
# leaves it uninitialized for the caller to fill, as apply_mask does at once;
# reaching it through ctypes costs ~300 ns, repaid from about 40 KiB on.
_uninitialized_bytes = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_char_p, ctypes.c_ssize_t)(
    ("PyBytes_FromStringAndSize", ctypes.pythonapi)
)
_UNINITIALIZED_MIN = 40 << 10

# Up to this size, bytes.isascii() (CPython's own C, ~30 ns) settles pure
# ASCII for much less than a cffi call.  Past it, C's ASCII loop is faster,
# and a non-ASCII byte near the end would make the check a wasted pass.
_ASCII_SHORTCUT_MAX = 4096

# max_frame_size=None reaches C as the largest uint64_t; any limit at least
# that large is the same as none, since a payload length has 63 bits.
_NO_LIMIT = 2**64 - 1

# Frames walked per ws_scan call; longer bursts take several calls.
_SCAN_BATCH = 256

# cffi releases the GIL around C calls, so threads cannot share one results
# array; each thread gets its own on first use.
_scan_results = threading.local()


def _export_writable(buf: bytearray | memoryview) -> object:
    """Export ``buf`` for C to write into; read-only buffers are a TypeError.

    Release the result with ``_release``.  Callers export a bytearray, which
    is always writable, with the cheaper unchecked ``_from_buffer(buf)``.
    """
    try:
        return _from_buffer("uint8_t[]", buf, True)
    except BufferError:
        raise TypeError("a writable buffer is required") from None


def _mask_key(key: BytesLike) -> bytes:
    """The key as bytes, which cffi passes without an export."""
    if len(key) != 4:
        raise ValueError("a mask key is 4 bytes")
    return bytes(key)


# ---- masking -----------------------------------------------------------------


def apply_mask(data: BytesLike, key: bytes, offset: int = 0) -> bytes:
    """Return ``data`` XORed with the repeated 4-byte ``key`` (RFC 6455 §5.3).

    ``offset`` is the position of ``data[0]`` within the masked payload
    (only ``offset % 4`` matters), so a payload that arrives in pieces can
    be unmasked piece by piece.
    """
    n = len(data)
    if type(key) is not bytes or len(key) != 4:
        key = _mask_key(key)
    # C writes the result straight into a new bytes object (cffi passes bytes
    # as a pointer to their data), saving the extra pass that going through a
    # bytearray would cost.  That is the C-API idiom: a fresh bytes object
    # that nothing else references, whose hash has not been computed, filled
    # before anyone sees it.  (For n == 0, bytes(0) is the shared empty
    # bytes, and C writes nothing.)
    out = bytes(n) if n < _UNINITIALIZED_MIN else _uninitialized_bytes(None, n)
    if type(data) is bytes:
        _mask_copy(out, data, n, key, offset & 3)
        return out
    src = _from_buffer(data)
    try:
        _mask_copy(out, src, n, key, offset & 3)
    finally:
        _release(src)
    return out


try:
    # The same loop behind a CPython fast call, for the one-call-per-frame use
    # where cffi's overhead dominates (csrc/maskmodule.c); same results.
    from ._cmask import apply_mask  # type: ignore[import-not-found,no-redef]  # noqa: F811
except ImportError:
    pass


def apply_mask_inplace(buf: bytearray | memoryview, key: bytes, offset: int = 0) -> None:
    """Mask (or unmask) the writable buffer ``buf`` in place; see apply_mask.

    Always in C: even for a few bytes, Python's slice assignment is slower.
    """
    if type(key) is not bytes or len(key) != 4:
        key = _mask_key(key)
    ptr = _from_buffer(buf) if type(buf) is bytearray else _export_writable(buf)
    try:
        _mask_inplace(ptr, len(buf), key, offset & 3)
    finally:
        _release(ptr)


# ---- UTF-8 -------------------------------------------------------------------


def _validate(state: int, data: BytesLike) -> int:
    """The state after ``data``, for any buffer; bytes get inlined fast paths."""
    if type(data) is bytearray and state == _UTF8_ACCEPT and len(data) <= _ASCII_SHORTCUT_MAX and data.isascii():
        return state
    ptr = _from_buffer(data)
    try:
        return _utf8_validate(state, ptr, len(data))
    finally:
        _release(ptr)


class Utf8Validator:
    """Incremental UTF-8 validation of a text message that arrives in pieces.

    The state between pieces lives in C's encoding (csrc/utf8.c), so a code
    point split across frames is accepted while a prefix that can no longer
    become valid (``F4 90``, ``ED A0``, ``C0``) fails at once.
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _UTF8_ACCEPT

    def reset(self) -> None:
        """Forget everything fed so far, to validate a new message."""
        self._state = _UTF8_ACCEPT

    @property
    def at_boundary(self) -> bool:
        """True if everything fed so far is complete, valid UTF-8."""
        return self._state == _UTF8_ACCEPT

    def feed(self, data: BytesLike) -> bool:
        """Validate the next piece; False once the text is invalid (and from then on)."""
        state = self._state
        if state == _UTF8_REJECT:
            return False
        if type(data) is not bytes:
            state = _validate(state, data)
        elif state != _UTF8_ACCEPT or len(data) > _ASCII_SHORTCUT_MAX or not data.isascii():
            state = _utf8_validate(state, data, len(data))
        self._state = state
        return state != _UTF8_REJECT


def is_utf8(data: BytesLike) -> bool:
    """True if ``data`` is complete, valid UTF-8 (RFC 3629)."""
    if type(data) is not bytes:
        return _validate(_UTF8_ACCEPT, data) == _UTF8_ACCEPT
    if len(data) <= _ASCII_SHORTCUT_MAX and data.isascii():
        return True
    return _utf8_validate(_UTF8_ACCEPT, data, len(data)) == _UTF8_ACCEPT


# ---- frame scanner -------------------------------------------------------------


class FrameScanner(_pyspeedups.FrameScanner):
    """The frame scanner with its loop in C; see ``_pyspeedups.FrameScanner``.

    Settings and their checks are inherited; only ``scan`` differs.  C writes
    its results into an array owned by the calling thread, so a call
    allocates nothing beyond the list it returns, and an idle connection
    does not carry a results array of its own (6 KiB each, which was half
    of a server's memory per idle connection).  Read-only buffers are refused with
    TypeError, since payloads are unmasked in place.
    """

    __slots__ = ()

    def scan(self, buf: bytearray, pos: int) -> tuple[list[int], int, int]:
        size = len(buf)
        if not 0 <= pos <= size:
            raise ValueError(f"pos {pos} is outside the buffer (length {size})")
        limit = self._max_frame_size
        if limit is None or limit > _NO_LIMIT:
            limit = _NO_LIMIT
        mask_required = self.mask_required
        allowed_rsv = self._allowed_rsv
        try:
            out = _scan_results.out
        except AttributeError:
            out = _scan_results.out = _ffi.new("uint64_t[]", 3 * _SCAN_BATCH + 1)
        ptr = _from_buffer(buf) if type(buf) is bytearray else _export_writable(buf)
        try:
            status = _scan(ptr, size, pos, mask_required, allowed_rsv, limit, out, _SCAN_BATCH)
            # ws_scan stores the new position after the last record.
            records = _unpack(out, 3 * (status >> 8) + 1)
            pos = records.pop()
            while status >> 8 == _SCAN_BATCH and not status & 0xFF:
                status = _scan(ptr, size, pos, mask_required, allowed_rsv, limit, out, _SCAN_BATCH)
                more = _unpack(out, 3 * (status >> 8) + 1)
                pos = more.pop()
                records += more
        finally:
            _release(ptr)
        return records, pos, status & 0xFF
