"""cffi build script for ``wsstack._speedups`` (API mode, out of line).

setup.py names ``ffibuilder`` in ``cffi_modules``; cffi then generates the
extension's C source at build time and compiles it together with csrc/.
API mode means the C compiler checks these declarations against
csrc/wsstack.h, so a mismatch breaks the build instead of corrupting memory.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI

_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "csrc")


def _csrc(name: str) -> str:
    # setuptools wants extension sources relative to setup.py, the build's cwd.
    return os.path.relpath(os.path.join(_CSRC, name))


# Kept in step with csrc/wsstack.h by hand; the compiler checks the match.
_CDEF = """
#define WS_UTF8_ACCEPT ...
#define WS_UTF8_REJECT ...

void ws_mask_inplace(uint8_t *buf, size_t n, const uint8_t *key, size_t offset);
void ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *key,
                  size_t offset);
uint32_t ws_utf8_validate(uint32_t state, const uint8_t *p, size_t n);
"""

# -O3 turns the masking loops into SIMD.  No -march: wheels must run on any
# x86_64 or aarch64 machine, and the baseline SSE2 / NEON is enough.
_COMPILE_ARGS = ["/O2"] if sys.platform == "win32" else ["-O3"]

ffibuilder = FFI()
ffibuilder.cdef(_CDEF)
ffibuilder.set_source(
    "wsstack._speedups",
    '#include "wsstack.h"',
    sources=[_csrc("mask.c"), _csrc("utf8.c")],
    depends=[_csrc("wsstack.h")],
    include_dirs=[_csrc("")],
    extra_compile_args=_COMPILE_ARGS,
)
