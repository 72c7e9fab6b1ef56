"""The connection state machine: messages, fragmentation, control frames, closing, limits, errors."""

from __future__ import annotations

import array
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buffer_forms import FORMS
from helpers import masked, open_pair, open_server, transfer, unmasked
from wsstack.connection import ClientConnection, ServerConnection, State
from wsstack.errors import ConnectionClosed, InvalidState, MessageTooBig, ProtocolError
from wsstack.events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    LocalFailure,
    Ping,
    Pong,
    ProtocolFailure,
    TextMessage,
)
from wsstack.frames import Frame, Opcode, parse_close
from wsstack.options import Options


def feed(conn: ServerConnection | ClientConnection, data: bytes) -> list[object]:
    conn.receive_data(data)
    return conn.events()


def failure_code(conn: ServerConnection | ClientConnection, events: list[object]) -> int:
    """The close code of the failure the connection reported and put on the wire."""
    assert isinstance(events[-1], ProtocolFailure), events
    out = conn.data_to_send()
    assert out[0] == 0x88, out
    payload = out[2:]
    if out[1] & 0x80:
        key, payload = payload[:4], payload[4:]
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    code, _ = parse_close(payload)
    assert code == events[-1].code == conn.close_code
    assert conn.state is State.CLOSED
    return code


# -- RFC 6455 §5.7 examples, received


def test_rfc_masked_text_received_by_server() -> None:
    server = open_server()
    assert feed(server, bytes.fromhex("818537fa213d7f9f4d5158")) == [TextMessage("Hello")]


def test_rfc_unmasked_text_received_by_client() -> None:
    client, _ = open_pair()
    assert feed(client, bytes.fromhex("810548656c6c6f")) == [TextMessage("Hello")]


def test_rfc_fragmented_text_received_by_client() -> None:
    client, _ = open_pair()
    assert feed(client, bytes.fromhex("010348656c")) == []
    assert feed(client, bytes.fromhex("80026c6f")) == [TextMessage("Hello")]


def test_rfc_ping_answered_with_pong() -> None:
    client, _ = open_pair()
    assert feed(client, bytes.fromhex("890548656c6c6f")) == [Ping(b"Hello")]
    out = client.data_to_send()
    assert out[:2] == b"\x8a\x85"
    key = out[2:6]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(out[6:])) == b"Hello"


def test_rfc_binary_16_and_64_bit_lengths() -> None:
    client, _ = open_pair()
    small = bytes(range(256))
    big = b"\x5a" * 65536
    events = feed(client, bytes.fromhex("827e0100") + small + bytes.fromhex("827f0000000000010000") + big)
    assert events == [BinaryMessage(small), BinaryMessage(big)]


# -- round trips


messages = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), max_size=8)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.one_of(st.none(), st.integers(1, 64)), st.data())
def test_round_trip_client_to_server_any_chunking(
    msgs: list[str | bytes], fragment: int | None, data: st.DataObject
) -> None:
    client, server = open_pair()
    for msg in msgs:
        client.send(msg, fragment_size=fragment)
    wire = client.data_to_send()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    received: list[object] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)]):
        if a < b:
            received += feed(server, wire[a:b])
    expected = [TextMessage(m) if isinstance(m, str) else BinaryMessage(m) for m in msgs]
    assert received == expected


BUFFER_TYPES = st.sampled_from([bytes, bytearray, memoryview])


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.binary(max_size=70_000), min_size=2, max_size=5),
    st.data(),
    BUFFER_TYPES,
)
def test_a_read_that_completes_a_held_frame_carries_whole_frames_and_a_new_tail(
    payloads: list[bytes], data: st.DataObject, buffer_type: type
) -> None:
    # The second read finishes the frame the first one left incomplete (its
    # header too, for a cut inside it), brings whole frames and starts one
    # more; only that last frame's head may stay held.
    frames = [masked(0x82, payload) for payload in payloads]
    first_cut = data.draw(st.integers(1, len(frames[0]) - 1))
    last_cut = data.draw(st.integers(1, len(frames[-1]) - 1))
    wire = b"".join(frames)
    end_of_second = len(wire) - len(frames[-1]) + last_cut
    server = open_server()
    received = feed(server, buffer_type(wire[:first_cut]))
    assert received == []
    received += feed(server, buffer_type(wire[first_cut:end_of_second]))
    assert received == [BinaryMessage(payload) for payload in payloads[:-1]]
    assert feed(server, buffer_type(wire[end_of_second:])) == [BinaryMessage(payloads[-1])]


@settings(max_examples=100)
@given(messages, st.one_of(st.none(), st.integers(1, 64)), st.data())
def test_round_trip_server_to_client_byte_by_byte_or_chunks(
    msgs: list[str | bytes], fragment: int | None, data: st.DataObject
) -> None:
    client, server = open_pair()
    for msg in msgs:
        server.send(msg, fragment_size=fragment)
    wire = server.data_to_send()
    size = data.draw(st.integers(1, 17))
    received: list[object] = []
    for i in range(0, len(wire), size):
        received += feed(client, wire[i : i + size])
    assert received == [TextMessage(m) if isinstance(m, str) else BinaryMessage(m) for m in msgs]


def test_control_frames_between_fragments() -> None:
    server = open_server()
    wire = masked(0x01, b"Hel") + masked(0x89, b"p1") + masked(0x00, b"l") + masked(0x8A, b"p2") + masked(0x80, b"o")
    assert feed(server, wire) == [Ping(b"p1"), Pong(b"p2"), TextMessage("Hello")]
    assert server.data_to_send() == unmasked(0x8A, b"p1")


def test_utf8_code_point_split_across_fragments() -> None:
    server = open_server()
    euro = "€".encode()
    wire = masked(0x01, euro[:1]) + masked(0x00, euro[1:2]) + masked(0x80, euro[2:])
    assert feed(server, wire) == [TextMessage("€")]


def test_large_message_sent_unjoined_but_identical() -> None:
    client, server = open_pair()
    payload = bytes(range(256)) * 1024
    server.send_binary(payload)
    buffers = server.buffers_to_send()
    assert len(buffers) == 2 and buffers[1] is payload
    assert feed(client, b"".join(buffers)) == [BinaryMessage(payload)]


# -- frame mode


def test_frame_mode_yields_every_frame() -> None:
    server = open_server()
    server.frame_mode = True
    wire = masked(0x01, b"Hel") + masked(0x89, b"!") + masked(0x80, b"lo") + masked(0x82, b"\x00")
    events = feed(server, wire)
    assert events == [
        Frame(Opcode.TEXT, b"Hel", False),
        Frame(Opcode.PING, b"!", True),
        Frame(Opcode.CONTINUATION, b"lo", True),
        Frame(Opcode.BINARY, b"\x00", True),
    ]
    assert server.data_to_send() == unmasked(0x8A, b"!")


def test_frame_mode_entered_mid_message_delivers_what_was_assembled() -> None:
    """The fragments read before the switch are one frame, not lost; the message goes on as frames."""
    server = open_server()
    assert feed(server, masked(0x01, b"frag") + masked(0x00, b"men")) == []
    server.frame_mode = True
    assert feed(server, masked(0x80, b"ted") + masked(0x82, b"bin")) == [
        Frame(Opcode.TEXT, b"fragmen", False),
        Frame(Opcode.CONTINUATION, b"ted", True),
        Frame(Opcode.BINARY, b"bin", True),
    ]


def test_frame_mode_delivers_a_close_frame_with_its_code_and_reason() -> None:
    server = open_server()
    server.frame_mode = True
    (frame,) = feed(server, masked(0x88, b"\x0f\xa0going"))
    assert frame == Frame(Opcode.CLOSE, b"\x0f\xa0going")
    assert (frame.close_code, frame.close_reason) == (4000, "going")
    assert server.data_to_send() == unmasked(0x88, b"\x0f\xa0going")


def test_frame_mode_checks_a_close_frame_before_delivering_it() -> None:
    server = open_server()
    server.frame_mode = True
    events = feed(server, masked(0x88, b"\x03\xe8\xff"))
    assert not any(isinstance(event, Frame) for event in events)
    assert failure_code(server, events) == 1007


def test_frame_mode_still_validates_utf8() -> None:
    server = open_server()
    server.frame_mode = True
    events = feed(server, masked(0x01, b"ok") + masked(0x80, b"\xc0\xaf"))
    assert events[0] == Frame(Opcode.TEXT, b"ok", False)
    assert failure_code(server, events) == 1007


# -- pings and pongs


def test_a_manual_pong_with_auto_pong_on_is_a_second_pong_as_documented() -> None:
    server = open_server()
    assert feed(server, masked(0x89, b"x")) == [Ping(b"x")]
    server.pong(b"x")  # not suppressed: an unsolicited pong is allowed (RFC 6455 5.5.3)
    assert server.data_to_send() == unmasked(0x8A, b"x") * 2


def test_auto_pong_can_be_turned_off() -> None:
    server = open_server(Options(auto_pong=False))
    assert feed(server, masked(0x89, b"x")) == [Ping(b"x")]
    assert server.data_to_send() == b""
    server.pong(b"x")
    assert server.data_to_send() == unmasked(0x8A, b"x")


NOT_MESSAGES = [5, 0, True, False, 10**9, 3.5, None, {}, {"a": 1}, [1, 2]]


@pytest.mark.parametrize("value", NOT_MESSAGES, ids=repr)
@pytest.mark.parametrize("call", ["send", "send_binary", "ping", "pong"])
def test_a_value_that_is_not_a_message_is_refused_with_what_is_accepted(call: str, value: object) -> None:
    client, server = open_pair()
    for conn in (client, server):
        # bytes(5) would be five zero bytes, and bytes(10**9) a gigabyte: nothing may be made of an int.
        accepted = "a bytes-like object" if call == "send_binary" else "str or a bytes-like object"
        with pytest.raises(TypeError, match=rf"^{call}\(\) takes {accepted}, not {type(value).__name__}$"):
            getattr(conn, call)(value)
        assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    "value", [b"ab\x00", bytearray(b"ab\x00"), memoryview(b"xab\x00")[1:], array.array("B", b"ab\x00")], ids=repr
)
def test_every_bytes_like_object_is_sent_as_binary(value: object) -> None:
    client, server = open_pair()
    for call in ("send", "send_binary"):
        getattr(client, call)(value)
        assert transfer(client, server) == [BinaryMessage(b"ab\x00")]
    client.ping(value)  # type: ignore[arg-type]
    assert transfer(client, server) == [Ping(b"ab\x00")]


def test_a_str_subclass_is_sent_as_text() -> None:
    class Name(str):
        pass

    client, server = open_pair()
    client.send(Name("alice"))
    assert transfer(client, server) == [TextMessage("alice")]
    with pytest.raises(TypeError, match="not str"):
        client.send_binary(Name("alice"))  # type: ignore[arg-type]


def test_ping_payload_limit() -> None:
    client, _ = open_pair()
    with pytest.raises(ValueError):
        client.ping(b"x" * 126)
    client.ping("é" * 62)
    assert len(client.data_to_send()) == 2 + 4 + 124


# -- closing handshake


def test_close_initiated_by_client() -> None:
    client, server = open_pair()
    client.close(1000, "done")
    assert client.state is State.CLOSING
    assert transfer(client, server) == [CloseReceived(1000, "done")]
    assert server.state is State.CLOSED
    # The answer echoes the code and the reason (RFC 6455 §5.5.1; what websockets and Node's ws do).
    assert transfer(server, client) == [CloseReceived(1000, "done")]
    assert client.state is State.CLOSED
    assert client.close_code == server.close_code == 1000
    assert client.close_reason == server.close_reason == "done"


def test_the_answer_to_a_close_echoes_its_code_and_reason_byte_for_byte() -> None:
    server = open_server()
    reason = "bye ✓ " + "x" * 115  # 123 bytes of UTF-8: the longest reason a close frame holds
    payload = (4001).to_bytes(2, "big") + reason.encode()
    assert len(payload) == 125
    assert feed(server, masked(0x88, payload)) == [CloseReceived(4001, reason)]
    assert server.data_to_send() == unmasked(0x88, payload)


def test_a_close_answered_after_our_own_is_not_echoed() -> None:
    client, server = open_pair()
    server.close(1001, "going away")
    ours = server.data_to_send()
    client.close(1000, "bye")  # crossed on the wire: each side's close answers the other's
    assert transfer(client, server) == [CloseReceived(1000, "bye")]
    assert server.data_to_send() == b""
    assert feed(client, ours) == [CloseReceived(1001, "going away")]
    assert client.data_to_send() == b""


def test_close_initiated_by_server_with_empty_payload() -> None:
    client, server = open_pair()
    server.close(None)
    assert transfer(server, client) == [CloseReceived(1005, "")]
    assert transfer(client, server) == [CloseReceived(1005, "")]
    assert client.state is server.state is State.CLOSED


def test_messages_after_close_are_refused_with_typed_error() -> None:
    client, server = open_pair()
    server.close(1001, "going away")
    transfer(server, client)
    with pytest.raises(ConnectionClosed) as info:
        client.send("late")
    assert info.value.code == 1001
    with pytest.raises(ConnectionClosed):
        server.ping()


def test_data_still_delivered_while_closing() -> None:
    client, server = open_pair()
    server.close()
    client.send("in flight")
    assert transfer(client, server) == [TextMessage("in flight")]


def test_close_rejects_unsendable_codes() -> None:
    client, _ = open_pair()
    for code in (1005, 1006, 1015, 999, 5000):
        with pytest.raises(ValueError):
            client.close(code)


def test_eof_without_close_is_1006() -> None:
    server = open_server()
    assert feed(server, masked(0x81, b"x")[:3]) == []
    assert feed(server, b"") == [ConnectionLost()]
    assert server.close_code == 1006 and server.state is State.CLOSED
    assert feed(server, masked(0x81, b"x")) == []


def test_send_before_handshake_is_invalid_state() -> None:
    server = ServerConnection()
    with pytest.raises(InvalidState):
        server.send("too early")


# -- every error path and its close code


ERROR_CASES = {
    "reserved opcode 3": (masked(0x83, b""), 1002),
    "reserved opcode 0xB": (masked(0x8B, b""), 1002),
    "rsv1 without extension": (masked(0xC1, b"x"), 1002),
    "rsv3 without extension": (masked(0x91, b"x"), 1002),
    "unmasked client frame": (unmasked(0x81, b"x"), 1002),
    "control too long": (masked(0x89, b"x" * 126), 1002),
    "fragmented ping": (masked(0x09, b"x"), 1002),
    "64-bit high bit": (bytes((0x82, 0xFF)) + (2**63 + 5).to_bytes(8, "big") + b"\x00" * 4, 1002),
    "continuation without start": (masked(0x80, b"x"), 1002),
    "text during fragmented message": (masked(0x01, b"a") + masked(0x81, b"b"), 1002),
    "invalid utf-8 single frame": (masked(0x81, b"\xff"), 1007),
    "invalid utf-8 in fragment": (masked(0x01, b"ok") + masked(0x00, b"\xed\xa0\x80"), 1007),
    "truncated utf-8 at end": (masked(0x01, b"ok") + masked(0x80, b"\xe2\x82"), 1007),
    "close with one byte": (masked(0x88, b"\x03"), 1002),
    "close code 999": (masked(0x88, (999).to_bytes(2, "big")), 1002),
    "close code 1005": (masked(0x88, (1005).to_bytes(2, "big")), 1002),
    "close code 1006": (masked(0x88, (1006).to_bytes(2, "big")), 1002),
    "close code 1015": (masked(0x88, (1015).to_bytes(2, "big")), 1002),
    "close code 2000": (masked(0x88, (2000).to_bytes(2, "big")), 1002),
    "close reason invalid utf-8": (masked(0x88, b"\x03\xe8\xc3\x28"), 1007),
    "frame over the limit": (masked(0x82, b"x" * 1001), 1009),
    "message over the limit": (masked(0x02, b"x" * 600) + masked(0x80, b"x" * 600), 1009),
    "too many fragments": (masked(0x02, b"") + masked(0x00, b"") * 10 + masked(0x80, b""), 1009),
}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_error_paths_send_their_close_code(name: str) -> None:
    wire, code = ERROR_CASES[name]
    server = open_server(Options(max_message_size=1000, max_fragments=10))
    assert failure_code(server, feed(server, wire)) == code
    # Whatever follows a failure is ignored.
    assert feed(server, masked(0x81, b"after")) == []


def test_oversized_frame_refused_from_header_alone() -> None:
    server = open_server(Options(max_message_size=1 << 20))
    header = bytes((0x82, 0xFF)) + (2**40).to_bytes(8, "big") + b"\x01\x02\x03\x04"
    events = feed(server, header)
    assert failure_code(server, events) == 1009
    assert isinstance(events[-1].error, MessageTooBig)


def test_client_refuses_masked_server_frame() -> None:
    client, _ = open_pair()
    assert failure_code(client, feed(client, masked(0x81, b"x"))) == 1002


def test_messages_before_an_error_are_kept() -> None:
    server = open_server()
    events = feed(server, masked(0x81, b"one") + masked(0x82, b"two") + masked(0x83, b""))
    assert events[:2] == [TextMessage("one"), BinaryMessage(b"two")]
    assert failure_code(server, events) == 1002


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.booleans(), st.integers(1, 50))
def test_random_bytes_never_raise(garbage: bytes, as_client: bool, chunk: int) -> None:
    """Whatever a peer sends after the handshake, only typed events come out."""
    if as_client:
        conn: ServerConnection | ClientConnection = open_pair(client_options=Options(max_message_size=256))[0]
    else:
        conn = open_server(Options(max_message_size=256))
    for i in range(0, len(garbage), chunk):
        conn.receive_data(garbage[i : i + chunk])
    conn.receive_data(b"")
    events = conn.events()
    allowed = (TextMessage, BinaryMessage, Ping, Pong, CloseReceived, ProtocolFailure, ConnectionLost)
    assert all(isinstance(e, allowed) for e in events)
    assert conn.state is State.CLOSED
    failures = [e for e in events if isinstance(e, ProtocolFailure)]
    assert all(isinstance(f.error, ProtocolError) and f.code in (1002, 1007, 1009) for f in failures)
    # Nothing comes after the end of the connection.
    ends = [i for i, e in enumerate(events) if isinstance(e, (ProtocolFailure, ConnectionLost, CloseReceived))]
    assert len(ends) == 1 and ends[0] == len(events) - 1


# -- fail-fast UTF-8 inside a frame that has not fully arrived


def test_invalid_utf8_fails_before_the_frame_completes() -> None:
    server = open_server()
    frame = masked(0x81, "κόσμε".encode() + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" + b"x" * 200)
    cut = 2 + 2 + 4 + len("κόσμε".encode()) + 14  # header, key, valid text, then the surrogate
    events = feed(server, frame[:cut])
    assert failure_code(server, events) == 1007


def test_invalid_utf8_in_a_partial_continuation_fails_early() -> None:
    server = open_server()
    assert feed(server, masked(0x01, b"ok")) == []
    frame = masked(0x80, b"fine" + b"\xf4\x90" + b"y" * 300)
    events = feed(server, frame[: 4 + 4 + 4 + 6])
    assert failure_code(server, events) == 1007


@settings(max_examples=100)
@given(st.text(min_size=1, max_size=200), st.integers(1, 40), st.integers(1, 64))
def test_partial_validation_accepts_valid_text_at_any_split(text: str, step: int, fragment: int) -> None:
    client, server = open_pair()
    client.send(text, fragment_size=fragment)
    client.send(text)
    wire = client.data_to_send()
    received: list[object] = []
    for i in range(0, len(wire), step):
        received += feed(server, wire[i : i + step])
    assert received == [TextMessage(text), TextMessage(text)]


# -- a held failure lets replies to earlier messages go out first


def test_held_failure_sends_replies_before_the_close_frame() -> None:
    server = open_server()
    server.hold_failures = True
    events = feed(server, masked(0x81, b"first") + masked(0xA1, b"rsv2") + masked(0x89, b""))
    assert events[0] == TextMessage("first") and isinstance(events[1], ProtocolFailure) and len(events) == 2
    assert server.held_failure is events[1].error and server.data_to_send() == b""
    assert feed(server, masked(0x81, b"ignored")) == []
    server.send_text("first")
    server.release_held_failure()
    out = server.data_to_send()
    assert out.startswith(unmasked(0x81, b"first"))
    assert parse_close(out[len(unmasked(0x81, b"first")) + 2 :]) == (
        1002,
        "reserved bit set without an extension that defines it",
    )
    assert server.state is State.CLOSED and server.close_code == 1002


def test_held_failure_released_by_eof_or_close() -> None:
    for finish in ("eof", "close"):
        server = open_server()
        server.hold_failures = True
        feed(server, masked(0x81, b"\xff"))
        if finish == "eof":
            server.receive_data(b"")
        else:
            server.close(1000)
        out = server.data_to_send()
        assert out[0] == 0x88 and parse_close(out[2:])[0] == 1007
        assert server.state is State.CLOSED


def test_fail_releases_a_held_failure_with_the_peers_code() -> None:
    server = open_server()
    server.hold_failures = True
    assert isinstance(feed(server, masked(0x83, b""))[-1], ProtocolFailure)
    server.fail(1011, "timeout")
    assert server.events() == []  # the failure was the peer's, and was reported as such
    out = server.data_to_send()
    assert out[0] == 0x88 and parse_close(out[2:])[0] == 1002 and server.held_failure is None


# -- failing from this side: LocalFailure


def test_fail_reports_a_local_failure_and_sends_its_close_frame() -> None:
    client, server = open_pair()
    server.fail(1011, "keepalive ping timeout")
    assert server.events() == [LocalFailure(1011, "keepalive ping timeout")]
    assert server.state is State.CLOSED and server.close_code == 1011
    assert server.close_reason == "keepalive ping timeout"
    assert transfer(server, client) == [CloseReceived(1011, "keepalive ping timeout")]
    # Nothing the peer sends afterwards is read.
    assert feed(server, masked(0x81, b"late")) == []


def test_fail_while_closing_sends_no_second_close_frame() -> None:
    client, _ = open_pair()
    client.close(1000)
    client.data_to_send()
    client.fail(1011, "no answer to our close")
    assert client.events() == [LocalFailure(1011, "no answer to our close")]
    assert client.data_to_send() == b"" and client.state is State.CLOSED and client.close_code == 1011


def test_fail_once_closed_does_nothing() -> None:
    server = open_server()
    feed(server, b"")
    server.fail()
    assert server.events() == [] and server.data_to_send() == b"" and server.close_code == 1006


def test_fail_refuses_an_unsendable_code_before_changing_anything() -> None:
    server = open_server()
    for code in (1005, 1006, 999):
        with pytest.raises(ValueError):
            server.fail(code)
    assert server.state is State.OPEN and server.events() == [] and server.data_to_send() == b""


def test_fail_cuts_a_long_reason_to_fit_the_close_frame() -> None:
    server = open_server()
    server.fail(1011, "é" * 100)
    [event] = server.events()
    assert isinstance(event, LocalFailure) and event.reason == "é" * 61  # 122 bytes; a 62nd would not fit in 123
    assert parse_close(server.data_to_send()[2:]) == (1011, "é" * 61)


def test_fail_before_the_handshake_is_invalid_state() -> None:
    with pytest.raises(InvalidState):
        ServerConnection().fail()


# -- the writer's fast paths against its general path


@settings(max_examples=100)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)), st.booleans())
def test_fast_sends_write_what_the_general_path_writes(message: str | bytes, as_client: bool) -> None:
    """``send``/``send_text`` without fragmentation take the fast path; one whole fragment takes the general one."""
    client, server = open_pair()
    sender, receiver = (client, server) if as_client else (server, client)
    payload = message.encode() if isinstance(message, str) else message
    if isinstance(message, str):
        sender.send_text(message)
    sender.send(message)
    fast = sender.data_to_send()
    if isinstance(message, str):
        sender.send_text(message, fragment_size=len(payload) + 1)
    sender.send(message, fragment_size=len(payload) + 1)
    general = sender.data_to_send()
    if not as_client:
        assert fast == general  # a server's frames have no random part
    expected = [TextMessage(message) if isinstance(message, str) else BinaryMessage(message)]
    expected *= 2 if isinstance(message, str) else 1
    assert transfer_bytes(receiver, fast) == expected
    assert transfer_bytes(receiver, general) == expected


def transfer_bytes(receiver: ServerConnection | ClientConnection, data: bytes) -> list[object]:
    receiver.receive_data(data)
    return receiver.events()


def test_send_text_refuses_bytes() -> None:
    _, server = open_pair()
    with pytest.raises(TypeError):
        server.send_text(b"not text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        server.send_binary("not bytes")  # type: ignore[arg-type]


def test_paused_pongs_answer_only_the_latest_ping() -> None:
    server = open_server()
    server.pause_pongs()
    feed(server, masked(0x89, b"1") + masked(0x89, b"2") + masked(0x89, b"3"))
    assert server.data_to_send() == b""
    server.resume_pongs()
    assert server.data_to_send() == unmasked(0x8A, b"3")
    server.resume_pongs()
    assert server.data_to_send() == b""


READ_FORMS = [form for form in FORMS if form.name != "released memoryview"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.sampled_from(READ_FORMS), st.lists(st.integers(0, 1 << 12), max_size=8))
def test_every_buffer_form_is_read_as_its_bytes(msgs: list[str | bytes], form: Any, cuts: list[int]) -> None:
    # Each read in one of the forms the C and Python twins are compared on,
    # cut where the form can hold it, the bytes a form cannot hold given plainly.
    client, server = open_pair()
    for msg in msgs:
        client.send(msg)
    wire = client.data_to_send()
    whole = len(wire) - len(wire) % 8
    bounds = sorted({0, whole, *(cut * 8 % (whole + 8) for cut in cuts if cut * 8 % (whole + 8) <= whole)})
    received: list[object] = []
    for start, end in itertools.pairwise(bounds):
        received += feed(server, form.make(wire[start:end])[0])
    if whole < len(wire):
        received += feed(server, wire[whole:])
    assert received == [TextMessage(m) if isinstance(m, str) else BinaryMessage(m) for m in msgs]


@pytest.mark.parametrize(
    "shape",
    [
        lambda raw: memoryview(bytearray(raw)).cast("B", (2, len(raw) // 2)),  # rows of bytes
        lambda raw: array.array("I", raw),  # not a memoryview, and 4-byte items
        lambda raw: memoryview(array.array("H", raw)),
    ],
    ids=["2-d memoryview", "array of I", "memoryview of H"],
)
def test_a_read_of_any_shape_or_item_size_is_read_byte_by_byte(shape: Any) -> None:
    # The read finishes a held frame, carries a whole one and starts a third:
    # offsets into it must count bytes, whatever len() of the object counts.
    frames = [masked(0x82, bytes([n]) * size) for n, size in ((97, 10), (98, 30), (99, 20))]
    wire = b"".join(frames)
    start, end = 10, 10 + 64  # 64 bytes: whole 2-byte and 4-byte items, two rows of 32
    server = open_server()
    assert feed(server, wire[:start]) == []
    received = feed(server, shape(wire[start:end]))
    received += feed(server, wire[end:])
    assert received == [BinaryMessage(b"a" * 10), BinaryMessage(b"b" * 30), BinaryMessage(b"c" * 20)]


def test_memoryview_with_wide_items_is_read_as_bytes() -> None:
    import array

    from wsstack.connection import ServerConnection, State
    from wsstack.events import BinaryMessage

    first = masked(0x82, b"abc")
    second = masked(0x82, b"defgh")
    raw = first + second
    raw += bytes(-len(raw) % 4)  # whole 4-byte items
    conn = ServerConnection(state=State.OPEN)
    conn.receive_data(memoryview(array.array("I", raw[:12])))
    conn.receive_data(memoryview(raw)[12:])
    data = [e.data for e in conn.events() if isinstance(e, BinaryMessage)]
    assert data == [b"abc", b"defgh"]
