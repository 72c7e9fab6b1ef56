"""The frame scanner: header checks, length forms, streaming, and C against Python.

Tests that take the ``cspeedups`` fixture compare the two implementations
directly; the others run against ``wsstack.speedups``, whichever
implementation it picked.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsstack import _pyspeedups
from wsstack.speedups import (
    ERR_CONTROL_FRAGMENTED,
    ERR_CONTROL_TOO_LONG,
    ERR_FRAME_TOO_BIG,
    ERR_LENGTH_HIGH_BIT,
    ERR_MASK_FORBIDDEN,
    ERR_MASK_REQUIRED,
    ERR_RESERVED_OPCODE,
    ERR_RSV,
    FrameScanner,
)

FIN = 0x80
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
KEY = bytes.fromhex("37fa213d")


@dataclass(frozen=True)
class Frame:
    head: int  # first header byte: FIN | RSV | opcode
    payload: bytes
    key: bytes | None = None
    length_form: int = 0  # 0 = shortest; 7, 16 or 64 forces that form

    def serialize(self) -> bytes:
        n = len(self.payload)
        form = self.length_form or (7 if n <= 125 else 16 if n <= 0xFFFF else 64)
        mask_bit = 0x80 if self.key is not None else 0
        if form == 7:
            header = bytes([self.head, mask_bit | n])
        elif form == 16:
            header = bytes([self.head, mask_bit | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([self.head, mask_bit | 127]) + n.to_bytes(8, "big")
        if self.key is None:
            return header + self.payload
        masked = bytes(b ^ self.key[i % 4] for i, b in enumerate(self.payload))
        return header + self.key + masked


def pairs(frames: list[int | bytes]) -> list[tuple[int, bytes]]:
    assert len(frames) % 2 == 0
    for head, payload in zip(frames[::2], frames[1::2]):
        assert type(head) is int and type(payload) is bytes
    return list(zip(frames[::2], frames[1::2]))  # type: ignore[arg-type]


def scan_all(scanner: FrameScanner, wire: bytes) -> tuple[list[tuple[int, bytes]], int, int]:
    frames, pos, error = scanner.scan(wire, 0)
    return pairs(frames), pos, error


# ---- good frames -------------------------------------------------------------------


def test_rfc6455_examples() -> None:
    client = FrameScanner(mask_required=False)
    server = FrameScanner(mask_required=True)
    assert scan_all(client, bytes.fromhex("810548656c6c6f")) == ([(0x81, b"Hello")], 7, 0)
    assert scan_all(server, bytes.fromhex("818537fa213d7f9f4d5158")) == ([(0x81, b"Hello")], 11, 0)
    fragments = bytes.fromhex("010348656c80026c6f")
    assert scan_all(client, fragments) == ([(0x01, b"Hel"), (0x80, b"lo")], 9, 0)
    assert scan_all(client, bytes.fromhex("890548656c6c6f")) == ([(0x89, b"Hello")], 7, 0)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    ("length", "form"),
    [
        (0, 7),
        (1, 7),
        (125, 7),
        (0, 16),
        (126, 16),
        (127, 16),
        (65535, 16),
        (0, 64),
        (126, 64),
        (65536, 64),
        (70_000, 64),
    ],
)
def test_length_forms(masked: bool, length: int, form: int) -> None:
    payload = os.urandom(length)
    frame = Frame(FIN | BINARY, payload, KEY if masked else None, form)
    wire = frame.serialize()
    scanner = FrameScanner(mask_required=masked)
    buf = bytearray(wire)
    assert scanner.scan(buf, 0) == ([FIN | BINARY, payload], len(wire), 0)
    assert buf == wire  # the input is only read


def test_every_prefix_is_incomplete_and_untouched() -> None:
    wire = Frame(FIN | TEXT, b"payload!", KEY, 16).serialize()
    for cut in range(len(wire)):
        buf = bytearray(wire[:cut])
        assert FrameScanner(mask_required=True).scan(buf, 0) == ([], 0, 0)
        assert buf == wire[:cut]


def test_scan_from_an_offset_and_trailing_partial_frame() -> None:
    first = Frame(FIN | TEXT, b"one").serialize()
    second = Frame(FIN | BINARY, b"two").serialize()
    partial = Frame(FIN | TEXT, b"three").serialize()[:4]
    buf = bytearray(b"junk" + first + second + partial)
    frames, pos, error = FrameScanner(mask_required=False).scan(buf, 4)
    assert pairs(frames) == [(FIN | TEXT, b"one"), (FIN | BINARY, b"two")]
    assert (pos, error) == (4 + len(first) + len(second), 0)
    assert FrameScanner(mask_required=False).scan(buf, len(buf)) == ([], len(buf), 0)


@pytest.mark.parametrize("pos", [-1, 3])
def test_pos_outside_the_buffer(pos: int) -> None:
    with pytest.raises(ValueError):
        FrameScanner(mask_required=False).scan(bytearray(2), pos)


def test_many_frames_in_one_call() -> None:
    frames = [Frame(FIN | BINARY, bytes([i % 256]) * (i % 7), KEY) for i in range(2000)]
    wire = b"".join(f.serialize() for f in frames)
    found, pos, error = scan_all(FrameScanner(mask_required=True), wire)
    assert found == [(f.head, f.payload) for f in frames]
    assert (pos, error) == (len(wire), 0)


def test_many_frames_then_an_error() -> None:
    frames = [Frame(FIN | PONG, b"x", KEY) for _ in range(600)]
    wire = b"".join(f.serialize() for f in frames)
    found, pos, error = scan_all(FrameScanner(mask_required=True), wire + b"\x83\x80")
    assert (len(found), pos, error) == (600, len(wire), ERR_RESERVED_OPCODE)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_any_buffer_is_scanned_and_left_alone(kind: type) -> None:
    wire = Frame(FIN | TEXT, b"abc", KEY).serialize() + Frame(FIN | BINARY, b"de", KEY).serialize()[:3]
    data = kind(bytearray(wire) if kind is memoryview else wire)
    assert FrameScanner(mask_required=True).scan(data, 0) == ([FIN | TEXT, b"abc"], 9, 0)
    assert bytes(data) == wire


def test_not_a_buffer_is_refused() -> None:
    with pytest.raises(TypeError):
        FrameScanner(mask_required=True).scan("\x81\x80abcd", 0)  # type: ignore[arg-type]


def test_buffer_can_be_resized_after_scan() -> None:
    buf = bytearray(Frame(FIN | TEXT, b"abc", KEY).serialize())
    _, pos, _ = FrameScanner(mask_required=True).scan(buf, 0)
    del buf[:pos]  # BufferError if the scan left the buffer exported
    buf += b"more"
    assert buf == b"more"


# ---- header errors -----------------------------------------------------------------


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(opcode: int) -> None:
    good = Frame(FIN | TEXT, b"ok").serialize()
    buf = bytearray(good + bytes([FIN | opcode, 0]))
    frames, pos, error = FrameScanner(mask_required=False).scan(buf, 0)
    assert (pairs(frames), pos, error) == ([(FIN | TEXT, b"ok")], len(good), ERR_RESERVED_OPCODE)


def test_rsv_bits_need_an_extension() -> None:
    wire = Frame(FIN | 0x40 | TEXT, b"compressed").serialize()
    scanner = FrameScanner(mask_required=False)
    assert scan_all(scanner, wire) == ([], 0, ERR_RSV)
    scanner.allowed_rsv = 0x40  # negotiated after the scanner was made
    assert scan_all(scanner, wire) == ([(FIN | 0x40 | TEXT, b"compressed")], len(wire), 0)
    for rsv in (0x20, 0x10):
        assert scan_all(scanner, Frame(FIN | rsv | TEXT, b"").serialize()) == ([], 0, ERR_RSV)
    everything = FrameScanner(mask_required=False, allowed_rsv=0x70)
    assert scan_all(everything, Frame(FIN | 0x70 | BINARY, b"").serialize())[2] == 0


# allowed_rsv values outside RSV1-3, and what both scanners raise for them.
BAD_RSV = [
    (0x80, ValueError),
    (0x01, ValueError),
    (0x0F, ValueError),
    (-1, ValueError),
    (-0x10, ValueError),
    (0x70 | 2**64, ValueError),  # RSV bits, and more past 64 bits
    (2**70, ValueError),
    (0x40 + 0.0, TypeError),
    ("0x40", TypeError),
    (None, TypeError),
]


@pytest.mark.parametrize(("value", "error"), BAD_RSV)
def test_allowed_rsv_takes_only_rsv_bits(value: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        FrameScanner(mask_required=False, allowed_rsv=value)
    scanner = FrameScanner(mask_required=False)
    with pytest.raises(error):
        scanner.allowed_rsv = value
    assert scanner.allowed_rsv == 0


@pytest.mark.parametrize("implementation", ["c", "python"])
@pytest.mark.parametrize(("value", "error"), BAD_RSV)
def test_scan_frames_function_checks_allowed_rsv(
    cspeedups: ModuleType, implementation: str, value: int, error: type[Exception]
) -> None:
    scan_frames = cspeedups.scan_frames if implementation == "c" else _pyspeedups.scan_frames
    wire = Frame(FIN | 0x40 | TEXT, b"abc").serialize()
    with pytest.raises(error):
        scan_frames(wire, 0, False, value, None)
    assert scan_frames(wire, 0, False, 0x40, None) == ([FIN | 0x40 | TEXT, b"abc"], len(wire), 0)
    assert scan_frames(wire, 0, False, 0x30, None) == ([], 0, ERR_RSV)


def test_masking_rules() -> None:
    masked = Frame(FIN | TEXT, b"hi", KEY).serialize()
    plain = Frame(FIN | TEXT, b"hi").serialize()
    assert scan_all(FrameScanner(mask_required=True), plain) == ([], 0, ERR_MASK_REQUIRED)
    assert scan_all(FrameScanner(mask_required=False), masked) == ([], 0, ERR_MASK_FORBIDDEN)
    # Reported before the masking key itself has arrived.
    assert scan_all(FrameScanner(mask_required=False), masked[:2]) == ([], 0, ERR_MASK_FORBIDDEN)


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_control_frames(opcode: int) -> None:
    scanner = FrameScanner(mask_required=False)
    assert scan_all(scanner, Frame(opcode, b"").serialize()) == ([], 0, ERR_CONTROL_FRAGMENTED)
    longest = Frame(FIN | opcode, bytes(125)).serialize()
    assert scan_all(scanner, longest) == ([(FIN | opcode, bytes(125))], len(longest), 0)
    # 126 or more is refused from the first two bytes, before the length.
    for second in (126, 127):
        assert scan_all(scanner, bytes([FIN | opcode, second])) == ([], 0, ERR_CONTROL_TOO_LONG)
    # Even a short payload in the 16-bit form: the length code alone is checked.
    assert scan_all(scanner, Frame(FIN | opcode, bytes(5), length_form=16).serialize())[2] == ERR_CONTROL_TOO_LONG


def test_length_with_the_high_bit_is_refused_without_the_payload() -> None:
    header = bytes([FIN | BINARY, 127]) + (2**63).to_bytes(8, "big")
    scanner = FrameScanner(mask_required=False)
    assert scan_all(scanner, header) == ([], 0, ERR_LENGTH_HIGH_BIT)
    assert scan_all(scanner, header[:9]) == ([], 0, 0)  # length not all there yet
    largest = bytes([FIN | BINARY, 127]) + (2**63 - 1).to_bytes(8, "big")
    assert scan_all(scanner, largest) == ([], 0, 0)  # legal; waits for the payload


def test_max_frame_size() -> None:
    scanner = FrameScanner(mask_required=True, max_frame_size=10)
    at_limit = Frame(FIN | BINARY, bytes(10), KEY).serialize()
    over = Frame(FIN | BINARY, bytes(11), KEY).serialize()
    assert scan_all(scanner, at_limit)[2] == 0
    assert scan_all(scanner, over[:2]) == ([], 0, ERR_FRAME_TOO_BIG)  # header alone is enough
    huge = bytes([FIN | BINARY, 0xFF]) + (2**40).to_bytes(8, "big")
    assert scan_all(scanner, huge) == ([], 0, ERR_FRAME_TOO_BIG)
    scanner.max_frame_size = None
    assert scan_all(scanner, over)[2] == 0
    scanner.max_frame_size = 0
    assert scan_all(scanner, Frame(FIN | PING, b"", KEY).serialize())[2] == 0
    assert scan_all(scanner, Frame(FIN | PING, b"!", KEY).serialize())[2] == ERR_FRAME_TOO_BIG
    scanner.max_frame_size = 2**80  # as good as no limit
    assert scan_all(scanner, over)[2] == 0
    with pytest.raises(ValueError):
        scanner.max_frame_size = -1


@pytest.mark.parametrize(
    ("first", "second", "mask_required", "allowed", "limit", "error"),
    [
        (0x40 | 0x3, 0x00, False, 0, None, ERR_RESERVED_OPCODE),  # reserved opcode before RSV
        (0x40 | PING, 0x7E, False, 0, None, ERR_RSV),  # RSV before control checks
        (PING, 0xFE, True, 0, None, ERR_CONTROL_FRAGMENTED),  # FIN before control length
        (FIN | PING, 0xFE, False, 0, None, ERR_CONTROL_TOO_LONG),  # control length before mask
        (FIN | BINARY, 0xFF, False, 0, 10, ERR_LENGTH_HIGH_BIT),  # high bit before size, mask
        (FIN | BINARY, 0x8B, False, 0, 10, ERR_FRAME_TOO_BIG),  # size before mask
    ],
)
def test_check_order(first: int, second: int, mask_required: bool, allowed: int, limit: int | None, error: int) -> None:
    wire = bytes([first, second]) + b"\xff" * 8
    scanner = FrameScanner(mask_required=mask_required, allowed_rsv=allowed, max_frame_size=limit)
    assert scan_all(scanner, wire) == ([], 0, error)


def test_mask_check_waits_for_the_extended_length() -> None:
    """The length checks come first, so a bad mask bit is reported once the length is in."""
    scanner = FrameScanner(mask_required=True)
    header = bytes([FIN | BINARY, 126, 0x01])
    assert scan_all(scanner, header) == ([], 0, 0)
    assert scan_all(scanner, header + b"\x00") == ([], 0, ERR_MASK_REQUIRED)


# ---- random streams ----------------------------------------------------------------


@st.composite
def frame_lists(draw: st.DrawFn, masked: bool, allowed_rsv: int = 0x40) -> list[Frame]:
    frames = []
    for _ in range(draw(st.integers(0, 12))):
        control = draw(st.booleans())
        opcode = draw(st.sampled_from([CLOSE, PING, PONG] if control else [CONTINUATION, TEXT, BINARY]))
        fin = FIN if control else draw(st.sampled_from([0, FIN]))
        rsv = draw(st.sampled_from([0, allowed_rsv]))
        size = st.integers(0, 125) if control else st.one_of(st.integers(0, 200), st.integers(65_000, 70_000))
        payload = random.Random(draw(st.integers(0, 2**32))).randbytes(draw(size))
        # Any length form that can hold the length; control frames must use the 7-bit one.
        n = len(payload)
        forms = [0] if control else [0, 64] + [16] * (n <= 0xFFFF) + [7] * (n <= 125)
        form = draw(st.sampled_from(forms))
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        frames.append(Frame(fin | rsv | opcode, payload, key, form))
    return frames


def stream(scanner: FrameScanner, wire: bytes, chunk_sizes: list[int]) -> list[tuple[int, bytes]]:
    """Feed wire chunk by chunk, as a connection would: append, scan, drop what was consumed."""
    buf = bytearray()
    found: list[tuple[int, bytes]] = []
    sizes = iter(chunk_sizes)
    offset = 0
    while offset < len(wire):
        step = next(sizes, len(wire))
        buf += wire[offset : offset + step]
        offset += step
        frames, pos, error = scanner.scan(buf, 0)
        assert error == 0
        found += pairs(frames)
        del buf[:pos]
    assert not buf
    return found


@settings(deadline=None, max_examples=60)
@given(
    masked=st.booleans(),
    data=st.data(),
    chunk_sizes=st.lists(st.integers(1, 300), max_size=30),
)
def test_streamed_in_chunks_equals_one_shot(masked: bool, data: st.DataObject, chunk_sizes: list[int]) -> None:
    frames = data.draw(frame_lists(masked))
    wire = b"".join(f.serialize() for f in frames)
    expected = [(f.head, f.payload) for f in frames]
    scanner = FrameScanner(mask_required=masked, allowed_rsv=0x40)
    assert scan_all(scanner, wire) == (expected, len(wire), 0)
    assert stream(scanner, wire, chunk_sizes) == expected


def compare(cspeedups: ModuleType, wire: bytes, pos: int, **config: object) -> None:
    """Same frames, position and error from both scanners, and neither touches its input."""
    python_buf, c_buf = bytearray(wire), bytearray(wire)
    python_result = _pyspeedups.FrameScanner(**config).scan(python_buf, pos)  # type: ignore[arg-type]
    c_result = cspeedups.FrameScanner(**config).scan(c_buf, pos)
    assert c_result == python_result
    assert c_buf == python_buf == wire


scanner_configs = st.fixed_dictionaries(
    {
        "mask_required": st.booleans(),
        "allowed_rsv": st.sampled_from([0, 0x40, 0x70]),
        "max_frame_size": st.sampled_from([None, 0, 1, 125, 126, 65535, 65536, 2**63, 2**64, 2**70]),
    }
)
interesting_bytes = st.sampled_from([0x00, 0x01, 0x7D, 0x7E, 0x7F, 0x80, 0x81, 0x88, 0x89, 0x8A, 0xC1, 0xFE, 0xFF])
garbage = st.lists(st.one_of(st.integers(0, 255), interesting_bytes), max_size=80).map(bytes)


@given(config=scanner_configs, wire=garbage, pos=st.integers(0, 80))
def test_c_equals_python_on_garbage(cspeedups: ModuleType, config: dict[str, object], wire: bytes, pos: int) -> None:
    compare(cspeedups, wire, min(pos, len(wire)), **config)


@given(
    config=scanner_configs,
    data=st.data(),
    tail=garbage,
    cut=st.integers(0, 10**6),
)
def test_c_equals_python_on_frames_then_garbage(
    cspeedups: ModuleType, config: dict[str, object], data: st.DataObject, tail: bytes, cut: int
) -> None:
    frames = data.draw(frame_lists(bool(config["mask_required"])))
    wire = b"".join(f.serialize() for f in frames) + tail
    compare(cspeedups, wire[: cut % (len(wire) + 1)], 0, **config)


@settings(deadline=None, max_examples=40)
@given(masked=st.booleans(), data=st.data(), chunk_sizes=st.lists(st.integers(1, 200), max_size=30))
def test_c_and_python_stream_alike(
    cspeedups: ModuleType, masked: bool, data: st.DataObject, chunk_sizes: list[int]
) -> None:
    frames = data.draw(frame_lists(masked))
    wire = b"".join(f.serialize() for f in frames)
    kwargs = {"mask_required": masked, "allowed_rsv": 0x40}
    python_frames = stream(_pyspeedups.FrameScanner(**kwargs), wire, chunk_sizes)  # type: ignore[arg-type]
    assert stream(cspeedups.FrameScanner(**kwargs), wire, chunk_sizes) == python_frames


def test_c_equals_python_on_random_bytes(cspeedups: ModuleType) -> None:
    """Plain random bytes, many of them, beyond what hypothesis shrinks toward."""
    for _ in range(3000):
        wire = os.urandom(int.from_bytes(os.urandom(1), "big") % 64)
        for mask_required in (False, True):
            compare(cspeedups, wire, 0, mask_required=mask_required, allowed_rsv=0x40, max_frame_size=1000)


class Index:
    """An int by ``__index__`` only, as numpy's integers are."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_scan_frames_function_checks_its_limit(cspeedups: ModuleType, implementation: str) -> None:
    scan_frames = cspeedups.scan_frames if implementation == "c" else _pyspeedups.scan_frames
    wire = Frame(FIN | BINARY, b"abc", KEY).serialize()
    assert scan_frames(wire, 0, True, 0, None) == ([FIN | BINARY, b"abc"], len(wire), 0)
    assert scan_frames(wire, 0, True, 0, 2) == ([], 0, ERR_FRAME_TOO_BIG)
    assert scan_frames(wire, 0, True, 0, Index(2)) == ([], 0, ERR_FRAME_TOO_BIG)
    assert scan_frames(wire, 0, True, 0, Index(3))[2] == 0
    assert scan_frames(wire, 0, True, 0, True) == ([], 0, ERR_FRAME_TOO_BIG)  # bool is an int: 1
    with pytest.raises(ValueError):
        scan_frames(wire, 0, True, 0, -1)
    with pytest.raises(ValueError):
        scan_frames(wire, 0, True, 0, -(2**70))
    for not_an_int in (3.0, 2.5, "3", b"3"):
        with pytest.raises(TypeError):
            scan_frames(wire, 0, True, 0, not_an_int)


@pytest.mark.parametrize("value", [3.0, "3"])
def test_max_frame_size_must_be_an_int(value: object) -> None:
    with pytest.raises(TypeError):
        FrameScanner(mask_required=True, max_frame_size=value)  # type: ignore[arg-type]
    scanner = FrameScanner(mask_required=True, max_frame_size=Index(3))  # type: ignore[arg-type]
    assert scanner.max_frame_size == 3
    with pytest.raises(TypeError):
        scanner.max_frame_size = value  # type: ignore[assignment]
    assert scanner.max_frame_size == 3


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_scan_frames_function_checks_pos(cspeedups: ModuleType, implementation: str) -> None:
    scan_frames = cspeedups.scan_frames if implementation == "c" else _pyspeedups.scan_frames
    wire = Frame(FIN | BINARY, b"abc").serialize()
    assert scan_frames(wire, Index(0), False, 0, None) == ([FIN | BINARY, b"abc"], len(wire), 0)
    for outside in (-1, len(wire) + 1, 2**64, -(2**64)):
        with pytest.raises(ValueError):
            scan_frames(wire, outside, False, 0, None)
    with pytest.raises(TypeError):
        scan_frames(wire, 0.0, False, 0, None)
