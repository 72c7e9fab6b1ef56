"""UTF-8 validation against CPython's decoder and websockets' approach.

Run with ``pytest benchmarks/bench_utf8.py --benchmark-only``.  Each input
(ASCII, mixed 1-4 byte text, valid text with one bad byte at the end) at
each size is one benchmark group, so the table compares, side by side:
wsstack's one-shot ``is_utf8`` and incremental ``Utf8Validator`` (C and pure
Python), strict ``bytes.decode("utf-8")``, and what websockets does for a
text message: a fresh incremental decoder from ``codecs``, fed the payload.
The decoders also build a str, which is the price of validating that way.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from wsstack import _pyspeedups

SIZES = {"256B": 256, "64KiB": 64 << 10}
MIXED = "ascii é ß ж € 日本 🎉 ".encode()  # 1, 2, 3 and 4-byte code points
UTF8Decoder = codecs.getincrementaldecoder("utf-8")


def make_input(kind: str, size: int) -> bytes:
    if kind == "ascii":
        return b"x" * size
    text = (MIXED * (size // len(MIXED) + 1))[:size]
    text = text.decode("utf-8", "ignore").encode()  # whole code points only
    if kind == "mixed":
        return text
    return text[:-1] + b"\xff"  # invalid at the end


@pytest.fixture(
    params=[(kind, size) for size in SIZES for kind in ("ascii", "mixed", "invalid-end")],
    ids=lambda param: "-".join(param),
)
def case(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    kind, size = request.param
    return f"utf8 {kind:<11} {size:>5}", make_input(kind, SIZES[size])


@pytest.fixture(scope="module")
def c_impl() -> ModuleType:
    module: ModuleType = pytest.importorskip("wsstack._cspeedups", reason="wsstack's C speedups are not built")
    return module


def run(benchmark: Any, case: tuple[str, bytes], func: Callable[[bytes], object]) -> None:
    benchmark.group, data = case
    benchmark(func, data)


def incremental(impl: ModuleType) -> Callable[[bytes], bool]:
    """One message through a fresh validator, as a connection would do it."""

    def validate(data: bytes) -> bool:
        validator = impl.Utf8Validator()
        return bool(validator.feed(data) and validator.at_boundary)

    return validate


def decode(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def websockets_style(data: bytes) -> bool:
    try:
        UTF8Decoder().decode(data, True)
    except UnicodeDecodeError:
        return False
    return True


def test_wsstack_c_is_utf8(benchmark: Any, case: tuple[str, bytes], c_impl: ModuleType) -> None:
    run(benchmark, case, c_impl.is_utf8)


def test_wsstack_c_validator(benchmark: Any, case: tuple[str, bytes], c_impl: ModuleType) -> None:
    run(benchmark, case, incremental(c_impl))


def test_wsstack_python_is_utf8(benchmark: Any, case: tuple[str, bytes]) -> None:
    run(benchmark, case, _pyspeedups.is_utf8)


def test_wsstack_python_validator(benchmark: Any, case: tuple[str, bytes]) -> None:
    run(benchmark, case, incremental(_pyspeedups))


def test_bytes_decode(benchmark: Any, case: tuple[str, bytes]) -> None:
    run(benchmark, case, decode)


def test_websockets_incremental_decoder(benchmark: Any, case: tuple[str, bytes]) -> None:
    run(benchmark, case, websockets_style)
