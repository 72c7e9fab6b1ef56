# Types of the cffi module that _speedups_build.py generates, for type
# checkers.  `lib` holds the functions declared in its cdef (csrc/wsstack.h):
# a pointer argument takes a cdata from ffi.from_buffer, or bytes where C
# only reads it.
from typing import Final

from _cffi_backend import FFI
from cffi import FFI as _FFI

ffi: FFI

class _Lib:
    WS_UTF8_ACCEPT: Final[int]
    WS_UTF8_REJECT: Final[int]
    @staticmethod
    def ws_mask_inplace(buf: _FFI.CData, n: int, key: bytes | _FFI.CData, offset: int, /) -> None: ...
    @staticmethod
    def ws_mask_copy(
        dst: _FFI.CData, src: bytes | _FFI.CData, n: int, key: bytes | _FFI.CData, offset: int, /
    ) -> None: ...
    @staticmethod
    def ws_utf8_validate(state: int, p: bytes | _FFI.CData, n: int, /) -> int: ...

lib: _Lib
