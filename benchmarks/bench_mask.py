"""Masking throughput against websockets, wsproto and a plain memory copy.

Run with ``pytest benchmarks/bench_mask.py --benchmark-only``.  Each payload
size is one benchmark group, so the table compares, side by side: wsstack's
C masking (copying and in place) and its pure-Python fallback,
``websockets.speedups.apply_mask`` (C), wsproto's ``XorMaskerSimple`` and
``bytearray(data)``, a copy of the same size that is the floor for any
copying mask.  (``bytes(data)`` would not do: for a bytes argument it returns
the same object without copying.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from websockets.speedups import apply_mask as websockets_apply_mask
from wsproto.frame_protocol import XorMaskerSimple

from wsstack import _pyspeedups

KEY = bytes.fromhex("37fa213d")
SIZES = {"16B": 16, "1KiB": 1 << 10, "64KiB": 64 << 10, "1MiB": 1 << 20, "16MiB": 16 << 20}


@pytest.fixture(params=list(SIZES), scope="module")
def size(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def c_impl() -> ModuleType:
    module: ModuleType = pytest.importorskip("wsstack._cspeedups", reason="wsstack's C speedups are not built")
    return module


def run(benchmark: Any, size: str, func: Callable[..., object], *args: object) -> None:
    benchmark.group = f"mask {size:>5}"
    benchmark(func, *args)


def payload(size: str) -> bytes:
    return os.urandom(SIZES[size])


def test_wsstack_c_copy(benchmark: Any, size: str, c_impl: ModuleType) -> None:
    run(benchmark, size, c_impl.apply_mask, payload(size), KEY)


def test_wsstack_c_inplace(benchmark: Any, size: str, c_impl: ModuleType) -> None:
    run(benchmark, size, c_impl.apply_mask_inplace, bytearray(payload(size)), KEY)


def test_wsstack_python_copy(benchmark: Any, size: str) -> None:
    run(benchmark, size, _pyspeedups.apply_mask, payload(size), KEY)


def test_websockets_c(benchmark: Any, size: str) -> None:
    run(benchmark, size, websockets_apply_mask, payload(size), KEY)


def test_wsproto(benchmark: Any, size: str) -> None:
    run(benchmark, size, lambda data: XorMaskerSimple(KEY).process(data), payload(size))


def test_memory_copy(benchmark: Any, size: str) -> None:
    run(benchmark, size, bytearray, payload(size))
