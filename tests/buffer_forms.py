"""Every kind of buffer a function that takes bytes may be given, made fresh for each call.

Shared by the C-against-Python twin tests (tests/core/test_twins.py) and the
connection's read tests: a form is a way to hand over bytes (bytes, views
of every shape and item size, arrays, ctypes), with what it can hold.
"""

from __future__ import annotations

import array
import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Makes the argument from the data, and a function that reads its bytes back.
Maker = Callable[[bytes], tuple[Any, Callable[[], bytes]]]


@dataclass(frozen=True)
class Form:
    """One way to hand bytes to a function, made fresh for each call."""

    name: str
    make: Maker
    unit: int = 1  # the data's length must be a multiple of this
    contiguous: bool = True
    writable: bool = False


def _bytearray(data: bytes) -> tuple[Any, Callable[[], bytes]]:
    buf = bytearray(data)
    return buf, lambda: bytes(buf)


def _view_of_bytearray(shape: Callable[[memoryview], memoryview], readonly: bool = False) -> Maker:
    def make(data: bytes) -> tuple[Any, Callable[[], bytes]]:
        buf = bytearray(data)
        view = shape(memoryview(buf))
        return (view.toreadonly() if readonly else view), lambda: bytes(buf)

    return make


def _strided(data: bytes) -> tuple[Any, Callable[[], bytes]]:
    """Every other byte of a twice-as-long buffer: the data, but not contiguous (past one byte)."""
    buf = bytearray(2 * len(data))
    buf[::2] = data
    return memoryview(buf)[::2], lambda: bytes(buf[::2])


def _strided_items(data: bytes) -> tuple[Any, Callable[[], bytes]]:
    """Every other 4-byte item: the data, in a non-contiguous "I" view."""
    buf = bytearray(2 * len(data))
    for i in range(0, len(data), 4):
        buf[2 * i : 2 * i + 4] = data[i : i + 4]
    view = memoryview(buf).cast("I")[::2]
    return view, view.tobytes


def _array(code: str) -> Maker:
    def make(data: bytes) -> tuple[Any, Callable[[], bytes]]:
        items = array.array(code)
        items.frombytes(data)
        return items, items.tobytes

    return make


def _ctypes_u16(data: bytes) -> tuple[Any, Callable[[], bytes]]:
    """A ctypes array: its format is "<H", not a native single character."""
    items = (ctypes.c_uint16 * (len(data) // 2)).from_buffer_copy(data)
    return items, lambda: bytes(items)


def _released(data: bytes) -> tuple[Any, Callable[[], bytes]]:
    view = memoryview(data)
    view.release()
    return view, lambda: data


def _unaligned(data: bytes) -> tuple[Any, Callable[[], bytes]]:
    """The data 3 bytes into a bytearray, with bytes after it too."""
    buf = bytearray(b"abc" + data + b"yz")
    return memoryview(buf)[3:-2], lambda: bytes(buf[3:-2])


FORMS = [
    Form("bytes", lambda d: (d, lambda: d)),
    Form("bytearray", _bytearray, writable=True),
    Form("memoryview(bytes)", lambda d: (memoryview(d), lambda: d)),
    Form("memoryview(bytearray)", _view_of_bytearray(lambda v: v), writable=True),
    Form("read-only memoryview(bytearray)", _view_of_bytearray(lambda v: v, readonly=True)),
    Form("unaligned slice", _unaligned, writable=True),
    Form("read-only unaligned slice", lambda d: (memoryview(b"abc" + d + b"yz")[3:-2], lambda: d)),
    Form("cast H", _view_of_bytearray(lambda v: v.cast("H")), unit=2, writable=True),
    Form("cast I", _view_of_bytearray(lambda v: v.cast("I")), unit=4, writable=True),
    Form("cast Q", _view_of_bytearray(lambda v: v.cast("Q")), unit=8, writable=True),
    Form("read-only cast I", lambda d: (memoryview(d).cast("I"), lambda: d), unit=4),
    Form("read-only cast Q", _view_of_bytearray(lambda v: v.cast("Q"), readonly=True), unit=8),
    Form("cast b (signed)", _view_of_bytearray(lambda v: v.cast("b")), writable=True),
    Form("cast c", _view_of_bytearray(lambda v: v.cast("c")), writable=True),
    # (memoryview cannot make an empty 2-D view.)
    Form("2-D", _view_of_bytearray(lambda v: v.cast("B", shape=[2, len(v) // 2]) if v else v), unit=2, writable=True),
    Form("strided", _strided, contiguous=False, writable=True),
    Form("strided cast I", _strided_items, unit=4, contiguous=False, writable=True),
    Form("array B", _array("B"), writable=True),
    Form("array H", _array("H"), unit=2, writable=True),
    Form("array I", _array("I"), unit=4, writable=True),
    Form("array d", _array("d"), unit=8, writable=True),
    Form("ctypes c_uint16 array", _ctypes_u16, unit=2, writable=True),
    Form("released memoryview", _released, contiguous=False),
]
