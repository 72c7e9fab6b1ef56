"""C speedups: the same API as ``_pyspeedups``, backed by csrc/.

Importing this module raises ImportError when the C modules were not built;
``wsstack.speedups`` then falls back to pure Python.  There are two:
``wsstack._fastcall``, plain C-API functions for what runs once or more per
frame (masking a payload, scanning a read), and ``wsstack._speedups``, the
cffi module for the rest (UTF-8 validation, masking in place).

The C work is cheap next to the cost of reaching it through cffi: a call
takes about 150 ns, each ``ffi.from_buffer`` export about 100 ns more, and
even looking up ``ffi.release`` 20-35 ns.  So the cffi wrappers bind the
functions they use once, pass ``bytes`` straight through (cffi hands C a
pointer to the object's data, no copy), export only other buffers, and
release each export before returning (a bytearray with a live export cannot
be resized).  Only UTF-8 validation of short pure-ASCII bytes is left to
CPython (``bytes.isascii``), see below.

C takes a buffer's length in bytes, which is the length of its export
(``len`` of a ``memoryview.cast("I")`` counts items).  When an export
fails, the Python twin's argument helpers say why, so both give the same
error; they also check every argument that is not a buffer.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from . import _pyspeedups
from ._fastcall import (
    apply_mask,
    mask_key,
    reset_mask_keys,
    scan_frames,
    serialize_client_frame,
    serialize_client_text,
    serialize_frame,
    serialize_text,
)
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
    _index,
    _mask_key,
    _readable,
    _writable,
    frame_header,
)
from ._speedups import ffi as _ffi
from ._speedups import lib as _lib

if TYPE_CHECKING:
    from cffi import FFI

if sys.implementation.name != "cpython":
    # _fastcall is written against CPython's C API, and emulations of it
    # elsewhere cost more per call than they save.  Other interpreters use
    # the Python code.
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

IMPLEMENTATION = "c"

# A forked child draws masking keys of its own (csrc/fastcall.c keeps the pool).
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=reset_mask_keys)

# Bound once, with the C signatures (pointer arguments take bytes or cdata).
_from_buffer = _ffi.from_buffer
_release = _ffi.release
_mask_inplace = _lib.ws_mask_inplace
_utf8_validate = _lib.ws_utf8_validate

_UTF8_ACCEPT: int = _lib.WS_UTF8_ACCEPT
_UTF8_REJECT: int = _lib.WS_UTF8_REJECT

# Up to this size, bytes.isascii() (CPython's own C, ~30 ns) settles pure
# ASCII for much less than a cffi call.  Past it, C's ASCII loop is faster,
# and a non-ASCII byte near the end would make the check a wasted pass.
_ASCII_SHORTCUT_MAX = 4096


def _export_writable(buf: bytearray | memoryview) -> FFI.CData:
    """Export ``buf`` for C to write into; ``len`` of the result is its length in bytes.

    Release the result with ``_release``.  Exporters refuse differently (a
    strided memoryview raises BufferError, a strided numpy array
    ValueError), so a refusal is retried through ``_writable``, which raises
    the Python twin's error (TypeError for a read-only buffer), or gives a
    byte view that exports.  Callers export a bytearray, which is always
    writable, with the cheaper unchecked ``_from_buffer(buf)``.
    """
    try:
        return _from_buffer("uint8_t[]", buf, True)
    except (TypeError, ValueError, BufferError):
        return _from_buffer("uint8_t[]", _writable(buf), True)


# ---- masking -----------------------------------------------------------------


def apply_mask_inplace(buf: bytearray | memoryview, key: bytes, offset: int = 0) -> None:
    """Mask (or unmask) the writable buffer ``buf`` in place; see apply_mask.

    Always in C: even for a few bytes, Python's slice assignment is slower.
    """
    if type(offset) is not int:
        offset = _index(offset)
    if type(key) is not bytes or len(key) != 4:
        key = _mask_key(key)
    if type(buf) is bytearray:
        ptr = _from_buffer(buf)
        n = len(buf)
    else:
        ptr = _export_writable(buf)
        n = len(ptr)
    try:
        _mask_inplace(ptr, n, key, offset & 3)
    finally:
        _release(ptr)


# ---- UTF-8 -------------------------------------------------------------------


def _validate(state: int, data: BytesLike) -> int:
    """The state after ``data``, for any buffer; bytes get inlined fast paths."""
    if type(data) is bytearray and state == _UTF8_ACCEPT and len(data) <= _ASCII_SHORTCUT_MAX and data.isascii():
        return state
    try:
        ptr = _from_buffer(data)
    except (TypeError, ValueError, BufferError):
        ptr = _from_buffer(_readable(data))  # the Python twin's error, as in _export_writable
    try:
        return _utf8_validate(state, ptr, len(ptr))
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

    Settings and their checks are inherited; only ``scan`` differs.  It is
    one CPython fast call (csrc/fastcall.c) that builds the payloads itself,
    unmasking while it copies them out of the buffer.
    """

    __slots__ = ()

    def scan(self, data: BytesLike, pos: int) -> tuple[list[int | bytes], int, int]:
        return scan_frames(data, pos, self.mask_required, self._allowed_rsv, self._max_frame_size)
