"""The one import point for wsstack's hot loops, in C when available.

Exposes the same names whichever implementation is active:
``IMPLEMENTATION`` ("c" or "python"), ``apply_mask``, ``apply_mask_inplace``,
``Utf8Validator``, ``is_utf8``, ``FrameScanner`` and the ``ERR_*`` codes of
the scanner (and ``scan_frames``, its loop as a function), ``frame_header``,
``serialize_frame`` and ``serialize_text``, their client forms
``serialize_client_frame`` and ``serialize_client_text`` (masked with a key
from ``mask_key``'s pool).  The C modules
(``wsstack._fastcall`` and the cffi-built ``wsstack._speedups``) are used
when they import; they are optional because installation falls back to pure
Python when there is no C compiler.  Setting ``WSSTACK_NO_SPEEDUPS=1`` before
the first import forces the pure-Python code, to test it or rule C out.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

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
    "NO_SPEEDUPS_ENV",
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

NO_SPEEDUPS_ENV = "WSSTACK_NO_SPEEDUPS"

if TYPE_CHECKING:
    # Type checkers see the reference implementation; both share its API.
    from ._pyspeedups import *
elif os.environ.get(NO_SPEEDUPS_ENV) == "1":
    from ._pyspeedups import *
else:
    try:
        from ._cspeedups import *
    except ImportError:
        from ._pyspeedups import *
