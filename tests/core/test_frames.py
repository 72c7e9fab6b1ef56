"""Frame serialization and close payloads, checked against RFC 6455 §5.7 byte for byte."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import masked, unmasked
from wsstack import _pyspeedups
from wsstack.errors import InvalidPayloadData, ProtocolError
from wsstack.frames import (
    FIN,
    Frame,
    Opcode,
    build_close,
    frame_header,
    is_sendable_close_code,
    parse_close,
    serialize_frame,
)

KEY = bytes.fromhex("37fa213d")


def test_rfc6455_single_frame_unmasked_text() -> None:
    assert serialize_frame(FIN | Opcode.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")


def test_rfc6455_single_frame_masked_text() -> None:
    assert serialize_frame(FIN | Opcode.TEXT, b"Hello", KEY) == bytes.fromhex("818537fa213d7f9f4d5158")


def test_rfc6455_fragmented_unmasked_text() -> None:
    first = serialize_frame(Opcode.TEXT, b"Hel")
    last = serialize_frame(FIN | Opcode.CONTINUATION, b"lo")
    assert first == bytes.fromhex("010348656c")
    assert last == bytes.fromhex("80026c6f")


def test_rfc6455_ping_and_masked_pong() -> None:
    assert serialize_frame(FIN | Opcode.PING, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert serialize_frame(FIN | Opcode.PONG, b"Hello", KEY) == bytes.fromhex("8a8537fa213d7f9f4d5158")


def test_rfc6455_256_bytes_binary_uses_16_bit_length() -> None:
    data = bytes(range(256))
    assert serialize_frame(FIN | Opcode.BINARY, data) == bytes.fromhex("827e0100") + data


def test_rfc6455_64_kib_binary_uses_64_bit_length() -> None:
    data = b"\xab" * 65536
    assert serialize_frame(FIN | Opcode.BINARY, data) == bytes.fromhex("827f0000000000010000") + data


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_length_forms_match_independent_encoder(length: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    assert serialize_frame(FIN | Opcode.BINARY, payload) == unmasked(0x82, payload)
    assert serialize_frame(FIN | Opcode.BINARY, payload, KEY) == masked(0x82, payload, KEY)
    assert len(frame_header(0x82, length)) == {True: 2, False: 4 if length < 65536 else 10}[length < 126]


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4), st.integers(0, 0x0F))
def test_masked_serialization_matches_reference(payload: bytes, key: bytes, opcode: int) -> None:
    assert serialize_frame(FIN | opcode, payload, key) == masked(FIN | opcode, payload, key)


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_mask_keys_are_4_bytes_and_vary(cspeedups: ModuleType, implementation: str) -> None:
    module = cspeedups if implementation == "c" else _pyspeedups
    drawn = [module.mask_key() for _ in range(3000)]
    assert all(type(k) is bytes and len(k) == 4 for k in drawn)
    # 3000 draws cross a batch boundary; a CSPRNG repeats a 32-bit key rarely.
    assert len(set(drawn)) > 2990


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_a_forked_child_draws_other_mask_keys_than_its_parent(cspeedups: ModuleType, implementation: str) -> None:
    import os

    module = cspeedups if implementation == "c" else _pyspeedups
    module.mask_key()  # a batch drawn: without the fork hook the child would go on with a copy of it
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe, then leaves at once
        try:
            os.write(writer, b"".join(module.mask_key() for _ in range(8)))
        finally:
            os._exit(0)
    os.close(writer)
    try:
        child = b""
        while chunk := os.read(reader, 64):
            child += chunk
    finally:
        os.close(reader)
        os.waitpid(pid, 0)
    parent = b"".join(module.mask_key() for _ in range(8))
    assert len(child) == 32 and child != parent


@given(
    first=st.integers(0, 255),
    payload=st.one_of(st.binary(max_size=300), st.integers(65_530, 65_540).map(bytes)),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_client_frames_are_masked_with_a_fresh_key_in_c_and_python(
    cspeedups: ModuleType, first: int, payload: bytes, kind: type
) -> None:
    text = payload.decode("latin-1")
    for module in (cspeedups, _pyspeedups):
        for frame, data in (
            (module.serialize_client_frame(first, kind(payload)), payload),
            (module.serialize_client_text(first, text), text.encode()),
        ):
            header = len(frame) - len(data) - 4
            key = frame[header : header + 4]
            assert frame == masked(first, data, key)


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_client_frame_functions_refuse_what_their_server_forms_refuse(
    cspeedups: ModuleType, implementation: str
) -> None:
    module = cspeedups if implementation == "c" else _pyspeedups
    with pytest.raises(TypeError, match="serialize_client_text\\(\\) takes str, not bytes"):
        module.serialize_client_text(0x81, b"x")
    with pytest.raises(UnicodeEncodeError):
        module.serialize_client_text(0x81, "\ud800")
    with pytest.raises(TypeError):
        module.serialize_client_frame(0x82, "text")
    with pytest.raises((ValueError, OverflowError)):
        module.serialize_client_frame(256, b"x")
    with pytest.raises(TypeError):
        module.serialize_client_frame(0x82, b"x", b"abcd")


def test_close_payload_round_trip() -> None:
    assert parse_close(build_close(1000, "bye")) == (1000, "bye")
    assert parse_close(build_close(4999, "é" * 61)) == (4999, "é" * 61)
    assert parse_close(b"") == (1005, "")
    assert build_close(None) == b""


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_unsendable_close_codes(code: int) -> None:
    assert not is_sendable_close_code(code)
    with pytest.raises(ValueError):
        build_close(code)
    with pytest.raises(ProtocolError) as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.close_code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4999])
def test_sendable_close_codes(code: int) -> None:
    assert is_sendable_close_code(code)
    assert parse_close(build_close(code)) == (code, "")


def test_a_close_frame_tells_its_code_and_reason() -> None:
    frame = Frame(Opcode.CLOSE, build_close(4000, "é"))
    assert (frame.close_code, frame.close_reason) == (4000, "é")
    empty = Frame(Opcode.CLOSE, b"")
    assert (empty.close_code, empty.close_reason) == (1005, "")
    for opcode in (Opcode.TEXT, Opcode.PING, Opcode.PONG):
        other = Frame(opcode, b"\x03\xe8")
        assert (other.close_code, other.close_reason) == (None, None)
    with pytest.raises(ProtocolError):
        _ = Frame(Opcode.CLOSE, b"\x03").close_code


def test_close_payload_errors() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002
    with pytest.raises(InvalidPayloadData) as bad_reason:
        parse_close(b"\x03\xe8\xff")
    assert bad_reason.value.close_code == 1007
    with pytest.raises(ValueError):
        build_close(1000, "x" * 124)
    with pytest.raises(ValueError):
        build_close(None, "reason without code")


# ---- C and Python writers -------------------------------------------------------


@given(
    first=st.integers(0, 255),
    payload=st.one_of(st.binary(max_size=300), st.integers(65_530, 65_540).map(bytes)),
    key=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_c_serialize_frame_equals_python(
    cspeedups: ModuleType, first: int, payload: bytes, key: bytes | None, kind: type
) -> None:
    expected = _pyspeedups.serialize_frame(first, payload, key)
    assert cspeedups.serialize_frame(first, kind(payload), key) == expected
    assert expected == (unmasked(first, payload) if key is None else masked(first, payload, key))


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_serialize_frame_refuses_bad_arguments(cspeedups: ModuleType, implementation: str) -> None:
    write = cspeedups.serialize_frame if implementation == "c" else _pyspeedups.serialize_frame
    with pytest.raises(ValueError):
        write(0x82, b"x", b"abc")
    with pytest.raises(TypeError):
        write(0x82, "text")  # type: ignore[arg-type]
    with pytest.raises((ValueError, OverflowError)):
        write(256, b"x")


@given(
    first=st.integers(0, 255),
    # ASCII (C frames it in place), any text (C encodes it), and past the 16-bit length.
    text=st.one_of(
        st.text(st.characters(max_codepoint=127), max_size=300),
        st.text(max_size=300),
        st.integers(65_530, 65_540).map(lambda n: "é" * (n // 2)),
    ),
    key=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
    subclass=st.booleans(),
)
def test_c_serialize_text_equals_python_and_serialize_frame_of_the_utf8(
    cspeedups: ModuleType, first: int, text: str, key: bytes | None, subclass: bool
) -> None:
    class Text(str):
        pass

    given_text = Text(text) if subclass else text
    expected = _pyspeedups.serialize_frame(first, text.encode(), key)
    assert _pyspeedups.serialize_text(first, given_text, key) == expected
    assert cspeedups.serialize_text(first, given_text, key) == expected


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_serialize_text_refuses_what_serialize_frame_refuses_and_what_is_not_text(
    cspeedups: ModuleType, implementation: str
) -> None:
    write = cspeedups.serialize_text if implementation == "c" else _pyspeedups.serialize_text
    for not_text in (b"bytes", bytearray(b"x"), 5, None):
        with pytest.raises(TypeError, match="serialize_text\\(\\) takes str, not"):
            write(0x81, not_text)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        write(0x81, "lone \ud800 surrogate")
    with pytest.raises(ValueError):
        write(0x81, "x", b"abc")
    with pytest.raises((ValueError, OverflowError)):
        write(256, "x")
    with pytest.raises(TypeError):
        write(0x81)  # type: ignore[call-arg]


def test_serialize_frame_takes_mask_key_by_name() -> None:
    assert serialize_frame(FIN | Opcode.TEXT, b"Hello", mask_key=KEY) == bytes.fromhex("818537fa213d7f9f4d5158")
