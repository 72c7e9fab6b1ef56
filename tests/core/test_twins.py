"""C against Python on every kind of argument: each call has one answer.

For every function with a C twin, both implementations get the same
arguments, drawn from every buffer type the functions accept (and some they
refuse) and from good and bad scalars, and must return the same result or
raise the same exception type.  Bad arguments come several at a time, so the
order in which the twins check them is compared too.  Where a buffer is
readable, the answer must also be the one for its bytes: C reads a buffer as
bytes whatever its item format, and so must Python.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buffer_forms import FORMS, Form
from wsstack import _pyspeedups

KEY = bytes.fromhex("37fa213d")


class Index:
    """An int in disguise: ``operator.index`` takes it, ``float`` arithmetic does not."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"Index({self.value})"


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    """What a call did: ("returns", value) or ("raises", exception type)."""
    try:
        return "returns", call()
    except Exception as exc:
        return "raises", type(exc)


# ---- buffers ---------------------------------------------------------------------


NOT_BUFFERS: list[object] = ["text", 42, None, [1, 2], 1.5]


@st.composite
def buffers(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> tuple[Form, bytes]:
    """A form and bytes of a length it can hold."""
    form = draw(st.sampled_from(FORMS))
    raw = draw(data)
    return form, raw[: len(raw) - len(raw) % form.unit]


def is_plain(form: Form, data: bytes) -> bool:
    """True if the buffer reads as its bytes: contiguous (one item is always), not released."""
    return form.contiguous or (form.name != "released memoryview" and len(data) <= form.unit)


# Scalars: good values, edge values, and values of the wrong type.
ints = st.one_of(
    st.integers(-5, 300),
    st.sampled_from([0x10, 0x20, 0x40, 0x70, 0x80, 2**31, 2**63 - 1, 2**63, 2**64, 2**70, -(2**70), -1]),
    st.integers(-5, 300).map(Index),
    st.sampled_from([True, False]),
)
wrong_types = st.sampled_from([1.0, 1.5, "1", b"\x01", None, [1]])
scalars = st.one_of(ints, ints, wrong_types)


def keys() -> st.SearchStrategy[Any]:
    """Mask keys: 4 bytes in any form, other lengths, and non-buffers."""
    return st.one_of(
        st.binary(min_size=4, max_size=4),
        st.tuples(st.sampled_from(FORMS), st.binary(min_size=3, max_size=8)).map(
            lambda pair: pair[0].make(pair[1][: len(pair[1]) - len(pair[1]) % pair[0].unit])[0]
        ),
        st.sampled_from(NOT_BUFFERS),
    )


# ---- the tests -------------------------------------------------------------------

payloads = st.one_of(st.binary(max_size=64), st.binary(min_size=1000, max_size=1100))


@settings(max_examples=400)
@given(buffer=buffers(payloads), key=keys(), offset=st.one_of(st.just(0), scalars), pass_offset=st.booleans())
def test_apply_mask(
    cspeedups: ModuleType, buffer: tuple[Form, bytes], key: Any, offset: Any, pass_offset: bool
) -> None:
    form, data = buffer
    extra = (offset,) if pass_offset else ()
    for_c, for_python = form.make(data)[0], form.make(data)[0]
    c = outcome(lambda: cspeedups.apply_mask(for_c, key, *extra))
    python = outcome(lambda: _pyspeedups.apply_mask(for_python, key, *extra))
    assert c == python, form.name
    if is_plain(form, data):
        assert python == outcome(lambda: _pyspeedups.apply_mask(data, key, *extra))
    elif python[0] == "returns":
        raise AssertionError(f"{form.name} of {len(data)} bytes was masked")


@settings(max_examples=400)
@given(buffer=buffers(payloads), key=keys(), offset=st.one_of(st.just(0), scalars))
def test_apply_mask_inplace(cspeedups: ModuleType, buffer: tuple[Form, bytes], key: Any, offset: Any) -> None:
    form, data = buffer

    def mask(implementation: ModuleType) -> tuple[tuple[str, object], bytes]:
        buf, contents = form.make(data)
        return outcome(lambda: implementation.apply_mask_inplace(buf, key, offset)), contents()

    did, contents = mask(cspeedups)
    assert (did, contents) == mask(_pyspeedups), form.name
    if did[0] == "returns":
        assert form.writable and is_plain(form, data), form.name
        assert contents == _pyspeedups.apply_mask(data, key, offset)
    else:
        assert contents == data  # a refused call changes nothing
        if form.contiguous and not form.writable and type(key) is bytes and len(key) == 4 and type(offset) is int:
            assert did == ("raises", TypeError), form.name


@settings(max_examples=300)
@given(
    first=st.one_of(st.integers(0, 255), scalars),
    buffer=buffers(payloads),
    key=st.one_of(st.none(), keys()),
    pass_key=st.booleans(),
)
def test_serialize_frame(
    cspeedups: ModuleType, first: Any, buffer: tuple[Form, bytes], key: Any, pass_key: bool
) -> None:
    form, data = buffer
    extra = (key,) if pass_key else ()
    for_c, for_python = form.make(data)[0], form.make(data)[0]
    c = outcome(lambda: cspeedups.serialize_frame(first, for_c, *extra))
    python = outcome(lambda: _pyspeedups.serialize_frame(first, for_python, *extra))
    assert c == python, form.name
    if is_plain(form, data):
        assert python == outcome(lambda: _pyspeedups.serialize_frame(first, data, *extra))


# Frames (masked and not, RSV bits set and not) followed by garbage.
def frame(head: int, payload: bytes, key: bytes | None) -> bytes:
    return _pyspeedups.serialize_frame(head, payload, key)


wires = st.lists(
    st.one_of(
        st.builds(
            frame,
            st.sampled_from([0x81, 0x82, 0x01, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0xA2, 0x92, 0xF2]),
            st.binary(max_size=140),
            st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
        ),
        st.binary(max_size=12),
    ),
    max_size=5,
).map(b"".join)


@settings(max_examples=500)
@given(
    buffer=buffers(wires),
    pos=st.one_of(st.integers(0, 3), scalars),
    mask_required=st.one_of(st.booleans(), st.sampled_from([0, 1, "", "yes", None])),
    allowed_rsv=st.one_of(st.sampled_from([0, 0x40, 0x70]), scalars),
    max_frame_size=st.one_of(st.sampled_from([None, 0, 125, 126, 2**64]), scalars),
)
def test_scan_frames(
    cspeedups: ModuleType,
    buffer: tuple[Form, bytes],
    pos: Any,
    mask_required: Any,
    allowed_rsv: Any,
    max_frame_size: Any,
) -> None:
    form, data = buffer
    settings_ = (pos, mask_required, allowed_rsv, max_frame_size)
    for_c, for_python = form.make(data)[0], form.make(data)[0]
    c = outcome(lambda: cspeedups.scan_frames(for_c, *settings_))
    python = outcome(lambda: _pyspeedups.scan_frames(for_python, *settings_))
    assert c == python, form.name
    if is_plain(form, data):
        assert python == outcome(lambda: _pyspeedups.scan_frames(data, *settings_))


utf8ish = st.lists(
    st.one_of(st.text(max_size=4).map(str.encode), st.binary(max_size=3), st.just(b"\xf0\x9d\x84\x9e")),
    max_size=20,
).map(b"".join)


@settings(max_examples=300)
@given(buffer=buffers(utf8ish), before=st.sampled_from([b"", b"ok", b"\xe2\x82", b"\xff"]))
def test_utf8(cspeedups: ModuleType, buffer: tuple[Form, bytes], before: bytes) -> None:
    form, data = buffer

    def check(implementation: ModuleType) -> tuple[tuple[str, object], tuple[str, object], bool]:
        whole = outcome(lambda: implementation.is_utf8(form.make(data)[0]))
        validator = implementation.Utf8Validator()
        validator.feed(before)
        piece = form.make(data)[0]
        return whole, outcome(lambda: validator.feed(piece)), validator.at_boundary

    c = check(cspeedups)
    assert c == check(_pyspeedups), form.name
    if is_plain(form, data):
        validator = _pyspeedups.Utf8Validator()
        validator.feed(before)
        assert c == (("returns", _pyspeedups.is_utf8(data)), ("returns", validator.feed(data)), validator.at_boundary)


# ---- the cases that differed, by name ----------------------------------------------


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_wide_items_are_read_as_their_bytes(cspeedups: ModuleType, implementation: str) -> None:
    twin = cspeedups if implementation == "c" else _pyspeedups
    invalid = b"ok\xff\xfe" + b"more"  # the bad bytes are in the first 4-byte item
    assert not twin.is_utf8(memoryview(invalid).cast("I"))
    assert not twin.Utf8Validator().feed(memoryview(invalid).cast("I"))
    euro = memoryview(b"ab\xe2\x82\xac!").cast("H")
    assert twin.is_utf8(euro[1:])  # b"\xe2\x82\xac!": all of the euro sign
    assert not twin.is_utf8(euro[2:])  # b"\xac!": its last byte alone
    buf = bytearray(8)
    twin.apply_mask_inplace(memoryview(buf).cast("I"), KEY)
    assert buf == KEY * 2
    assert twin.apply_mask(memoryview(bytes(8)).cast("Q"), KEY) == KEY * 2
    assert twin.serialize_frame(0x82, array.array("I", [0, 0])) == b"\x82\x08" + bytes(8)
    assert twin.serialize_frame(0x82, b"", memoryview(KEY).cast("I")) == b"\x82\x80" + KEY
    wire = memoryview(b"\x82\x02ab\x81\x00").cast("H")
    assert twin.scan_frames(wire, 0, False, 0, None) == ([0x82, b"ab", 0x81, b""], 6, 0)


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_non_contiguous_buffers_are_a_buffer_error(cspeedups: ModuleType, implementation: str) -> None:
    twin = cspeedups if implementation == "c" else _pyspeedups
    strided = memoryview(bytearray(b"\x81\x00\x81\x00"))[::2]
    for call in (
        lambda: twin.is_utf8(strided),
        lambda: twin.Utf8Validator().feed(strided),
        lambda: twin.apply_mask(strided, KEY),
        lambda: twin.apply_mask(b"data", memoryview(KEY * 2)[::2]),
        lambda: twin.apply_mask_inplace(strided, KEY),
        lambda: twin.serialize_frame(0x82, strided),
        lambda: twin.scan_frames(strided, 0, False, 0, None),
    ):
        with pytest.raises(BufferError):
            call()
    # Read-only is the first complaint about a buffer to write into.
    with pytest.raises(TypeError):
        twin.apply_mask_inplace(strided.toreadonly(), KEY)


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_fast_calls_take_positional_arguments_only(cspeedups: ModuleType, implementation: str) -> None:
    twin = cspeedups if implementation == "c" else _pyspeedups
    with pytest.raises(TypeError):
        twin.apply_mask(b"abc", KEY, offset=1)
    with pytest.raises(TypeError):
        twin.serialize_frame(0x82, b"abc", mask_key=KEY)
    with pytest.raises(TypeError):
        twin.scan_frames(b"", 0, True, 0, max_frame_size=None)
