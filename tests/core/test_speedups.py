"""Masking and UTF-8 validation: the active implementation, and C against Python.

Tests that take the ``cspeedups`` fixture compare the C and pure-Python
implementations directly; the others run against ``wsstack.speedups``,
whichever implementation it picked (the suite also runs with
WSSTACK_NO_SPEEDUPS=1).
"""

from __future__ import annotations

import importlib
import itertools
import os
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsstack import _pyspeedups, speedups

KEY = bytes.fromhex("37fa213d")
keys = st.binary(min_size=4, max_size=4)
# Sizes on both sides of the C wrappers' small-input thresholds.
payloads = st.binary(max_size=300)


def reference_mask(data: bytes, key: bytes, offset: int = 0) -> bytes:
    return bytes(b ^ key[(offset + i) % 4] for i, b in enumerate(data))


# ---- selection -------------------------------------------------------------------


def test_implementation_follows_environment() -> None:
    if os.environ.get("WSSTACK_NO_SPEEDUPS") == "1":
        assert speedups.IMPLEMENTATION == "python"
    elif os.environ.get("WSSTACK_REQUIRE_SPEEDUPS") == "1":
        assert speedups.IMPLEMENTATION == "c"
    else:
        assert speedups.IMPLEMENTATION in ("c", "python")


def test_both_implementations_export_the_same_api(cspeedups: ModuleType) -> None:
    assert sorted(cspeedups.__all__) == sorted(_pyspeedups.__all__)
    for name in _pyspeedups.__all__:
        assert hasattr(speedups, name)
        if name.startswith("ERR_"):
            assert getattr(cspeedups, name) == getattr(_pyspeedups, name)
            # The codes scan_frames returns, as csrc/wsstack.h defines them.
            assert getattr(importlib.import_module("wsstack._fastcall"), name) == getattr(_pyspeedups, name)
    assert (cspeedups.IMPLEMENTATION, _pyspeedups.IMPLEMENTATION) == ("c", "python")


# ---- masking ---------------------------------------------------------------------


def test_rfc6455_masked_hello() -> None:
    masked = bytes.fromhex("7f9f4d5158")
    assert speedups.apply_mask(masked, KEY) == b"Hello"
    assert speedups.apply_mask(b"Hello", KEY) == masked
    buf = bytearray(masked)
    speedups.apply_mask_inplace(buf, KEY)
    assert buf == b"Hello"


@pytest.mark.parametrize("offset", range(4))
def test_every_length_and_offset(offset: int) -> None:
    data = os.urandom(100)
    for n in range(101):
        expected = reference_mask(data[:n], KEY, offset)
        result = speedups.apply_mask(data[:n], KEY, offset)
        assert type(result) is bytes
        assert result == expected
        buf = bytearray(data[:n])
        speedups.apply_mask_inplace(buf, KEY, offset)
        assert buf == expected


def test_unaligned_memoryview_slices() -> None:
    base = os.urandom(256)
    for start in range(17):
        for n in (0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 200):
            expected = reference_mask(base[start : start + n], KEY, start)
            view = memoryview(base)[start : start + n]
            assert speedups.apply_mask(view, KEY, start) == expected
            buf = bytearray(base)
            speedups.apply_mask_inplace(memoryview(buf)[start : start + n], KEY, start)
            assert buf == base[:start] + expected + base[start + n :]


def test_only_offset_modulo_4_matters() -> None:
    data = os.urandom(50)
    for offset in range(12):
        assert speedups.apply_mask(data, KEY, offset) == reference_mask(data, KEY, offset % 4)


@pytest.mark.parametrize("n", [0, 5, 100, 70_000])
def test_bytes_bytearray_and_memoryview_inputs_agree(n: int) -> None:
    data = os.urandom(n)
    expected = speedups.apply_mask(data, KEY, 1)
    assert speedups.apply_mask(bytearray(data), KEY, 1) == expected
    assert speedups.apply_mask(memoryview(data), KEY, 1) == expected
    assert speedups.apply_mask(data, bytearray(KEY), 1) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [3, 1000])
@pytest.mark.parametrize("key_length", [0, 3, 5, 8])
def test_key_must_have_4_bytes(n: int, key_length: int) -> None:
    with pytest.raises(ValueError):
        speedups.apply_mask(bytes(n), bytes(key_length))
    with pytest.raises(ValueError):
        speedups.apply_mask_inplace(bytearray(n), bytes(key_length))


@pytest.mark.parametrize("n", [3, 1000])
def test_inplace_needs_a_writable_buffer(n: int) -> None:
    with pytest.raises(TypeError):
        speedups.apply_mask_inplace(bytes(n), KEY)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        speedups.apply_mask_inplace(memoryview(bytes(n)), KEY)


def test_large_payload() -> None:
    data = os.urandom(3 << 20)
    masked = speedups.apply_mask(data, KEY, 3)
    assert masked[:1000] == reference_mask(data[:1000], KEY, 3)
    assert masked[-1000:] == reference_mask(data[-1000:], KEY, 3 + len(data) - 1000)
    buf = bytearray(masked)
    speedups.apply_mask_inplace(buf, KEY, 3)
    assert buf == data


@pytest.mark.parametrize("n", [1023, 1024, 1025, 4099])
@pytest.mark.parametrize("offset", range(4))
def test_python_masking_on_both_sides_of_its_lane_threshold(n: int, offset: int) -> None:
    """The pure-Python code switches from an int XOR to per-lane tables at 1 KiB."""
    data = os.urandom(n)
    expected = reference_mask(data, KEY, offset)
    assert _pyspeedups.apply_mask(data, KEY, offset) == expected
    buf = bytearray(data)
    _pyspeedups.apply_mask_inplace(buf, KEY, offset)
    assert buf == expected
    buf = bytearray(data)
    _pyspeedups.apply_mask_inplace(memoryview(buf), KEY, offset)
    assert buf == expected


@given(data=payloads, key=keys, cuts=st.lists(st.integers(0, 300), max_size=6))
def test_piecewise_equals_one_shot(data: bytes, key: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    copied = b"".join(speedups.apply_mask(p, key, a) for p, a in zip(pieces, bounds))
    assert copied == speedups.apply_mask(data, key)
    buf = bytearray(data)
    view = memoryview(buf)
    for a, b in itertools.pairwise(bounds):
        speedups.apply_mask_inplace(view[a:b], key, a)
    assert buf == copied


@given(data=payloads, key=keys, offset=st.integers(0, 7))
def test_inplace_equals_copy(data: bytes, key: bytes, offset: int) -> None:
    buf = bytearray(data)
    speedups.apply_mask_inplace(buf, key, offset)
    assert buf == speedups.apply_mask(data, key, offset) == reference_mask(data, key, offset)


@given(data=payloads, key=keys, offset=st.integers(0, 3), skip=st.integers(0, 15))
def test_c_masking_equals_python(cspeedups: ModuleType, data: bytes, key: bytes, offset: int, skip: int) -> None:
    view = memoryview(data)[skip:]
    expected = _pyspeedups.apply_mask(view, key, offset)
    assert cspeedups.apply_mask(view, key, offset) == expected
    buf = bytearray(data)
    cspeedups.apply_mask_inplace(memoryview(buf)[skip:], key, offset)
    assert buf[skip:] == expected


def test_c_masking_equals_python_on_large_sizes(cspeedups: ModuleType) -> None:
    for n in (4095, 65536, 65537, 1 << 20):
        data = os.urandom(n)
        for offset in range(4):
            assert cspeedups.apply_mask(data, KEY, offset) == _pyspeedups.apply_mask(data, KEY, offset)


# ---- UTF-8 -----------------------------------------------------------------------

VALID = [
    b"",
    b"plain ASCII, long enough for the 16-byte fast path",
    b"\x00\x7f",
    b"\xc2\x80",  # U+0080, smallest 2-byte
    b"\xdf\xbf",  # U+07FF
    b"\xe0\xa0\x80",  # U+0800, smallest 3-byte
    b"\xed\x9f\xbf",  # U+D7FF, just below the surrogates
    b"\xee\x80\x80",  # U+E000, just above them
    b"\xef\xbf\xbf",  # U+FFFF
    b"\xf0\x90\x80\x80",  # U+10000, smallest 4-byte
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF, the last code point
    "κόσμε €𝄞 日本語 ascii".encode(),
]

# (bytes, length of the prefix that is still a valid start)
INVALID = [
    (b"\xc0\x80", 0),  # overlong NUL
    (b"\xc1\xbf", 0),  # overlong U+007F
    (b"\xe0\x80\x80", 1),  # overlong
    (b"\xe0\x9f\xbf", 1),  # overlong U+07FF
    (b"\xf0\x80\x80\x80", 1),  # overlong
    (b"\xf0\x8f\xbf\xbf", 1),  # overlong U+FFFF
    (b"\xed\xa0\x80", 1),  # U+D800
    (b"\xed\xbf\xbf", 1),  # U+DFFF
    (b"\xf4\x90\x80\x80", 1),  # U+110000
    (b"\x80", 0),  # lone continuation
    (b"\xbf", 0),
    (b"ab\x80", 2),
    (b"\xc2\x41", 1),  # missing continuation
    (b"\xe1\x80\x41", 2),
    (b"\xf1\x80\x80\xc0", 3),
    (b"\xc2\x80\x80", 2),  # one continuation too many
    *((bytes([b]), 0) for b in range(0xF5, 0x100)),
]

TRUNCATED = [b"\xc2", b"\xe0\xa0", b"\xed\x9f", b"\xf0\x90\x80", b"\xf4\x8f", b"abc\xe2\x82"]


def verdict(impl: ModuleType, chunks: list[bytes]) -> list[tuple[bool, bool]]:
    """feed() result and at_boundary after each chunk."""
    validator = impl.Utf8Validator()
    return [(validator.feed(chunk), validator.at_boundary) for chunk in chunks]


@pytest.mark.parametrize("data", VALID)
def test_valid(data: bytes) -> None:
    assert speedups.is_utf8(data)
    validator = speedups.Utf8Validator()
    assert validator.feed(data)
    assert validator.at_boundary


@pytest.mark.parametrize("data", VALID)
def test_code_point_split_across_feeds_is_accepted(data: bytes) -> None:
    for cut in range(len(data) + 1):
        validator = speedups.Utf8Validator()
        assert validator.feed(data[:cut])
        assert validator.feed(data[cut:])
        assert validator.at_boundary
    validator = speedups.Utf8Validator()
    assert all(validator.feed(data[i : i + 1]) for i in range(len(data)))
    assert validator.at_boundary


@pytest.mark.parametrize(("data", "viable"), INVALID)
def test_invalid(data: bytes, viable: int) -> None:
    assert not speedups.is_utf8(data)
    assert not speedups.Utf8Validator().feed(data)
    # Byte by byte: the first byte after the viable prefix fails, at once.
    validator = speedups.Utf8Validator()
    results = [validator.feed(data[i : i + 1]) for i in range(len(data))]
    assert results == [True] * viable + [False] * (len(data) - viable)
    assert not validator.at_boundary


@pytest.mark.parametrize("prefix", [b"\xf4\x90", b"\xed\xa0", b"\xc0", b"\xe0\x80", b"\xf0\x80", b"\xf5"])
def test_dead_prefix_is_rejected_without_waiting(prefix: bytes) -> None:
    validator = speedups.Utf8Validator()
    assert not validator.feed(b"text " + prefix)
    validator = speedups.Utf8Validator()
    assert validator.feed(b"text ")
    assert not validator.feed(prefix)


@pytest.mark.parametrize("data", TRUNCATED)
def test_truncated_is_not_invalid_but_not_at_boundary(data: bytes) -> None:
    validator = speedups.Utf8Validator()
    assert validator.feed(data)
    assert not validator.at_boundary
    assert not speedups.is_utf8(data)


def test_invalid_is_sticky_until_reset() -> None:
    validator = speedups.Utf8Validator()
    assert not validator.feed(b"\xff")
    assert not validator.feed(b"valid")
    assert not validator.at_boundary
    validator.reset()
    assert validator.at_boundary
    assert validator.feed(b"valid")
    validator.feed(b"\xe2")
    validator.reset()
    assert validator.at_boundary


def test_buffer_types() -> None:
    data = "ünïcödé text".encode()
    for wrapped in (data, bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
        assert speedups.is_utf8(wrapped)
        assert speedups.Utf8Validator().feed(wrapped)


# Every sequence of up to 3 bytes drawn from the edges of the UTF-8 byte
# classes, checked against a brute-force definition of "can still become
# valid": some completion with continuation bytes decodes.
EDGE_BYTES = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF]
EDGE_BYTES += [0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
CONTINUATIONS = [
    bytes(c) for n in range(1, 4) for c in itertools.product([0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF], repeat=n)
]


def expected_state(data: bytes) -> tuple[bool, bool]:
    """(still viable, complete) by brute force over completions."""
    try:
        data.decode()
        return True, True
    except UnicodeDecodeError:
        pass
    for tail in CONTINUATIONS:
        try:
            (data + tail).decode()
            return True, False
        except UnicodeDecodeError:
            pass
    return False, False


@pytest.mark.parametrize("length", [1, 2, 3])
def test_exhaustive_edge_sequences(length: int) -> None:
    for combo in itertools.product(EDGE_BYTES, repeat=length):
        data = bytes(combo)
        expected = expected_state(data)
        whole = verdict(speedups, [data])[-1]
        assert whole == expected, data.hex()
        assert verdict(speedups, [data[i : i + 1] for i in range(length)])[-1] == expected, data.hex()


def test_c_and_python_agree_on_exhaustive_edge_sequences(cspeedups: ModuleType) -> None:
    """Every edge sequence of up to 3 bytes, and of 4 bytes after a 4-byte lead, cut anywhere."""
    short = (bytes(c) for n in (1, 2, 3) for c in itertools.product(EDGE_BYTES, repeat=n))
    long = (
        bytes([lead, *rest]) for lead in (0xF0, 0xF1, 0xF3, 0xF4) for rest in itertools.product(EDGE_BYTES, repeat=3)
    )
    for data in itertools.chain(short, long):
        for cut in range(len(data) + 1):
            chunks = [data[:cut], data[cut:]]
            assert verdict(cspeedups, chunks) == verdict(_pyspeedups, chunks), (data.hex(), cut)


texts = st.text(max_size=120)
# Bytes that are mostly UTF-8-shaped, so random input reaches deep states.
utf8ish = st.lists(
    st.one_of(
        st.text(max_size=4).map(str.encode),
        st.sampled_from([bytes([b]) for b in EDGE_BYTES]),
        st.binary(max_size=3),
    ),
    max_size=40,
).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)] or [data]


@given(data=utf8ish, cuts=st.lists(st.integers(0, 1000), max_size=8))
def test_any_split_gives_the_verdict_of_the_whole(data: bytes, cuts: list[int]) -> None:
    whole = verdict(speedups, [data])[-1]
    assert verdict(speedups, chunked(data, cuts))[-1] == whole


@given(data=st.one_of(st.binary(max_size=64), utf8ish))
def test_agrees_with_strict_decode(data: bytes) -> None:
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert speedups.is_utf8(data) == valid
    validator = speedups.Utf8Validator()
    assert (validator.feed(data) and validator.at_boundary) == valid


@given(data=st.one_of(st.binary(max_size=64), utf8ish), cuts=st.lists(st.integers(0, 1000), max_size=8))
def test_c_validator_equals_python(cspeedups: ModuleType, data: bytes, cuts: list[int]) -> None:
    chunks = chunked(data, cuts)
    assert verdict(cspeedups, chunks) == verdict(_pyspeedups, chunks)
    assert cspeedups.is_utf8(data) == _pyspeedups.is_utf8(data)


@given(
    text=texts,
    where=st.integers(0, 10_000),
    bad=st.sampled_from([b"\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90", b"\xff", b"\xe2\x82A"]),
    size=st.integers(1, 9),
)
def test_first_failing_chunk_is_the_same_in_c_and_python(
    cspeedups: ModuleType, text: str, where: int, bad: bytes, size: int
) -> None:
    cut = where % (len(text) + 1)
    prefix = text[:cut].encode()
    data = prefix + bad + text[cut:].encode()
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    results = verdict(cspeedups, chunks)
    assert results == verdict(_pyspeedups, chunks)
    first_failure = [ok for ok, _ in results].index(False)
    # The invalid byte is inside `bad`, so the failure comes no later than
    # the chunk holding its last byte and no earlier than the one holding its first.
    assert len(prefix) // size <= first_failure <= (len(prefix) + len(bad) - 1) // size
