"""permessage-deflate (RFC 7692): worked examples, negotiation, round trips, limits, errors, interoperation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol as WsClient
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory as WsClientDeflate
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory as WsServerDeflate
from websockets.frames import Opcode as WsOpcode
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol as WsServer
from websockets.uri import parse_uri

from helpers import masked, open_pair, transfer
from wsstack.connection import ClientConnection, Connection, ServerConnection, State
from wsstack.errors import InvalidHandshake, InvalidPayloadData, MessageTooBig
from wsstack.events import BinaryMessage, HandshakeFailed, Ping, ProtocolFailure, RequestReceived, TextMessage
from wsstack.extensions import ClientPerMessageDeflate, PerMessageDeflate, ServerPerMessageDeflate
from wsstack.extensions.permessage_deflate import _STEP
from wsstack.handshake import ClientHandshake, format_extensions, parse_extensions
from wsstack.http11 import serialize_request
from wsstack.options import Options

MARKER = b"\x00\x00\xff\xff"
DEFLATE = Options(enable_compression=True)


def compressed_pair(
    server_options: Options = DEFLATE, client_options: Options = DEFLATE
) -> tuple[ClientConnection, ServerConnection]:
    client, server = open_pair(server_options, client_options)
    assert [e.name for e in client.extensions] == [e.name for e in server.extensions] == ["permessage-deflate"]
    return client, server


def feed(conn: Connection, data: bytes) -> list[object]:
    conn.receive_data(data)
    return list(conn.events())


def failure(conn: Connection, events: list[object]) -> int:
    """The close code of the failure the connection reported; it is also what went on the wire."""
    assert isinstance(events[-1], ProtocolFailure), events
    assert conn.state is State.CLOSED
    assert conn.close_code == events[-1].code
    return events[-1].code


def strict_inflate(data: bytes, window_bits: int) -> bytes:
    """Inflate one output byte per call, so zlib checks every distance against the window alone.

    Within one call zlib copies matches out of its output buffer without
    asking whether they lie inside the window; with one byte of room per call
    every match goes through the window check.
    """
    inflater = zlib.decompressobj(-window_bits)
    out = bytearray()
    pending = data
    while True:
        chunk = inflater.decompress(pending, 1)
        pending = inflater.unconsumed_tail
        if not chunk and not pending:
            return bytes(out)
        out += chunk


def far_repeats(size: int) -> bytes:
    """Data whose best matches lie 300 bytes back: beyond a 256-byte window, inside a 512-byte one."""
    block = bytes((i * 7919 + (i >> 3) * 31) & 0xFF for i in range(300))
    return (block * (size // 300 + 1))[:size]


# -- RFC 7692 §7.2.3 worked examples (server to client, so the frames are unmasked)


def test_rfc_hello_compressed_in_one_block() -> None:
    client, server = compressed_pair()
    assert feed(client, bytes.fromhex("c107f248cdc9c90700")) == [TextMessage("Hello")]
    server.send_text("Hello")
    assert server.data_to_send() == bytes.fromhex("c107f248cdc9c90700")


def test_rfc_hello_fragmented() -> None:
    client, _ = compressed_pair()
    assert feed(client, bytes.fromhex("4103f248cd")) == []
    assert feed(client, bytes.fromhex("8004c9c90700")) == [TextMessage("Hello")]


def test_rfc_second_hello_shares_the_window() -> None:
    client, server = compressed_pair()
    server.send_text("Hello")
    server.send_text("Hello")
    assert server.data_to_send() == bytes.fromhex("c107f248cdc9c90700c105f200110000")
    assert feed(client, bytes.fromhex("c107f248cdc9c90700c105f200110000")) == [TextMessage("Hello")] * 2


def test_rfc_second_hello_without_context_takeover() -> None:
    client, server = compressed_pair(client_options=Options(enable_compression=True, server_no_context_takeover=True))
    server.send_text("Hello")
    server.send_text("Hello")
    wire = server.data_to_send()
    assert wire == bytes.fromhex("c107f248cdc9c90700") * 2
    assert feed(client, wire) == [TextMessage("Hello")] * 2


def test_rfc_block_with_no_compression() -> None:
    client, _ = compressed_pair()
    assert feed(client, bytes.fromhex("c10b000500faff48656c6c6f00")) == [TextMessage("Hello")]


def test_rfc_block_with_bfinal_set() -> None:
    client, _ = compressed_pair()
    assert feed(client, bytes.fromhex("c108f348cdc9c9070000")) == [TextMessage("Hello")]
    # The stream goes on after the final block: a new message, and one referring back into the old window.
    assert feed(client, bytes.fromhex("c107f248cdc9c90700")) == [TextMessage("Hello")]
    assert feed(client, bytes.fromhex("c108f348cdc9c9070000c105f200110000")) == [TextMessage("Hello")] * 2


def test_rfc_two_deflate_blocks_in_one_message() -> None:
    client, _ = compressed_pair()
    assert feed(client, bytes.fromhex("c10df24805000000ffffcac9c90700")) == [TextMessage("Hello")]


def test_empty_fragment_ends_a_message() -> None:
    # §7.2.3.6: a lone 0x00 (the start of an empty stored block) is a valid last fragment.
    client, server = compressed_pair()
    assert feed(client, bytes.fromhex("410bf248cdc9c907000000ffff") + bytes.fromhex("800100")) == [TextMessage("Hello")]
    server.send_binary(b"")
    assert server.data_to_send() == bytes.fromhex("c20100")


def final_block_then(more: bytes, zdict: bytes | None) -> bytes:
    """ "Hello" ended by a block with BFINAL set, then ``more`` as a new stream (seeded with ``zdict``)."""
    first = zlib.compressobj(6, zlib.DEFLATED, -15)
    second = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=zdict) if zdict else zlib.compressobj(6, zlib.DEFLATED, -15)
    head = first.compress(b"Hello") + first.flush(zlib.Z_FINISH)
    return head + (second.compress(more) + second.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_blocks_after_a_final_block_in_one_message() -> None:
    assert PerMessageDeflate().decode(0x40, final_block_then(b"World", None), True, None) == b"HelloWorld"
    # The window carries over the final block: the second stream may refer back into the first.
    payload = final_block_then(b"Hello", b"Hello")
    assert payload.endswith(bytes.fromhex("f200110000"))  # the RFC's back-reference to "Hello"
    assert PerMessageDeflate().decode(0x40, payload, True, None) == b"HelloHello"
    with pytest.raises(MessageTooBig):
        PerMessageDeflate().decode(0x40, payload, True, 9)


def test_too_many_final_blocks_in_one_frame() -> None:
    client, _ = compressed_pair()
    final_empty = bytes.fromhex("0300")  # BFINAL, fixed Huffman, end of block
    assert failure(client, feed(client, bytes.fromhex("c2") + bytes((40,)) + final_empty * 20)) == 1007


# -- what goes on the wire


def test_rsv1_only_on_the_first_frame_of_a_compressed_message() -> None:
    client, server = compressed_pair()
    server.send_text("x" * 1000 + "y" * 1000, fragment_size=4)
    wire = server.data_to_send()
    first_bytes = []
    pos = 0
    while pos < len(wire):
        first_bytes.append(wire[pos])
        pos += 2 + wire[pos + 1]
    assert first_bytes[0] == 0x41 and first_bytes[-1] == 0x80 and set(first_bytes[1:-1]) <= {0x00}
    assert feed(client, wire) == [TextMessage("x" * 1000 + "y" * 1000)]


def test_control_frames_are_never_compressed() -> None:
    client, server = compressed_pair()
    server.ping(b"x" * 100)
    assert server.data_to_send()[:2] == b"\x89\x64"
    assert feed(client, bytes.fromhex("8903") + b"abc") == [Ping(b"abc")]


def test_threshold_leaves_short_messages_uncompressed() -> None:
    options = Options(enable_compression=True, compression_threshold=10)
    client, server = compressed_pair(options, options)
    server.send_text("123456789")
    server.send_text("1234567890")
    wire = server.data_to_send()
    assert wire[:11] == b"\x81\x09123456789" and wire[11] == 0xC1
    assert feed(client, wire) == [TextMessage("123456789"), TextMessage("1234567890")]
    client.send_binary(b"short")
    assert transfer(client, server) == [BinaryMessage(b"short")]


def test_zlib_objects_are_made_on_first_use_and_dropped_when_not_needed() -> None:
    extension = PerMessageDeflate(decompress_no_context_takeover=True, threshold=100)
    assert extension._compressor is None and extension._decompressor is None
    assert extension.encode(b"small") == (0, b"small")
    assert extension._compressor is None
    rsv, data = PerMessageDeflate().encode(b"Hello" * 30)
    assert extension.decode(rsv, data[:3], False, None) + extension.decode(rsv, data[3:], True, None) == b"Hello" * 30
    assert extension._decompressor is None


@pytest.mark.parametrize("bits", range(9, 16))
def test_compressor_stays_inside_its_window(bits: int) -> None:
    encoder = PerMessageDeflate(compress_window_bits=bits)
    stream = b"".join(encoder.encode(far_repeats(3000 + n))[1] + MARKER for n in range(3))
    expected = b"".join(far_repeats(3000 + n) for n in range(3))
    assert strict_inflate(stream, bits) == expected


def test_window_8_is_honoured_with_zlib_s_9() -> None:
    data = far_repeats(5000)
    # The checker does catch a stream that reaches 300 bytes back ...
    wider = zlib.compressobj(6, zlib.DEFLATED, -10)
    with pytest.raises(zlib.error, match="too far back"):
        strict_inflate(wider.compress(data) + wider.flush(zlib.Z_SYNC_FLUSH), 8)
    # ... but zlib's 9-bit window, the least it makes, never matches more than 250 bytes back.
    encoder = PerMessageDeflate(compress_window_bits=8)
    messages = [data, b"", data[:256], data[:257], data]
    stream = b"".join(encoder.encode(message)[1] + MARKER for message in messages)
    assert strict_inflate(stream, 8) == b"".join(messages)


@settings(max_examples=60)
@given(
    st.integers(8, 15),
    st.booleans(),
    st.lists(st.binary(max_size=600) | st.binary(min_size=1, max_size=40).map(lambda b: b * 25), max_size=5),
)
def test_compressor_output_fits_the_agreed_window(bits: int, reset: bool, messages: list[bytes]) -> None:
    encoder = PerMessageDeflate(compress_window_bits=bits, compress_no_context_takeover=reset)
    stream = b"".join(encoder.encode(message)[1] + MARKER for message in messages)
    assert strict_inflate(stream, bits) == b"".join(messages)


# -- failures


def test_corrupt_stream_is_1007() -> None:
    client, _ = compressed_pair()
    assert failure(client, feed(client, bytes.fromhex("c103ffffff"))) == 1007


def test_far_reference_is_1007() -> None:
    # The second RFC "Hello" refers back five bytes; without a first message nothing is there.
    client, _ = compressed_pair()
    assert failure(client, feed(client, bytes.fromhex("c105f200110000"))) == 1007


def test_reset_window_rejects_references_into_the_previous_message() -> None:
    client, _ = compressed_pair(client_options=Options(enable_compression=True, server_no_context_takeover=True))
    assert feed(client, bytes.fromhex("c107f248cdc9c90700")) == [TextMessage("Hello")]
    assert failure(client, feed(client, bytes.fromhex("c105f200110000"))) == 1007


def test_rsv1_on_a_continuation_frame_is_1002() -> None:
    client, _ = compressed_pair()
    assert feed(client, bytes.fromhex("4103f248cd")) == []
    assert failure(client, feed(client, bytes.fromhex("c004c9c90700"))) == 1002


def test_rsv1_on_a_control_frame_is_1002() -> None:
    client, _ = compressed_pair()
    assert failure(client, feed(client, bytes.fromhex("c90548656c6c6f"))) == 1002


def test_rsv1_without_negotiation_is_1002() -> None:
    client, _ = open_pair(DEFLATE, Options())
    assert client.extensions == []
    assert failure(client, feed(client, bytes.fromhex("c107f248cdc9c90700"))) == 1002


@pytest.mark.parametrize("first_byte", [0xA1, 0x91, 0xE1])
def test_rsv2_and_rsv3_stay_undefined_with_deflate(first_byte: int) -> None:
    client, _ = compressed_pair()
    assert failure(client, feed(client, bytes((first_byte, 1)) + b"\x00")) == 1002


def test_size_limit_applies_to_the_decompressed_message() -> None:
    options = Options(enable_compression=True, max_message_size=1000)
    client, server = compressed_pair(options, options)
    server.send_binary(bytes(1000))
    assert feed(client, server.data_to_send()) == [BinaryMessage(bytes(1000))]
    wire = compressed_frames([bytes(1001)], 0x2)
    assert len(wire) < 20
    assert failure(client, feed(client, wire)) == 1009


def test_size_limit_counts_every_frame_of_a_message() -> None:
    options = Options(enable_compression=True, max_message_size=10_000)
    client, _ = compressed_pair(options, options)
    wire = compressed_frames([bytes(4000)] * 3, 0x2)
    assert failure(client, feed(client, wire)) == 1009


def test_decode_stops_at_the_limit() -> None:
    rsv, data = PerMessageDeflate().encode(bytes(100_000))
    decoder = PerMessageDeflate()
    with pytest.raises(MessageTooBig):
        decoder.decode(rsv, data, True, 99_999)
    assert PerMessageDeflate().decode(rsv, data, True, 100_000) == bytes(100_000)
    assert PerMessageDeflate().decode(rsv, data, True, None) == bytes(100_000)


@pytest.mark.parametrize("size", [_STEP - 1, _STEP, _STEP + 1, 2 * _STEP, 3 * _STEP + 5])
def test_decode_in_steps_stops_exactly_at_the_limit(size: int) -> None:
    message = far_repeats(size)
    rsv, data = PerMessageDeflate().encode(message)
    assert PerMessageDeflate().decode(rsv, data, True, size) == message
    assert PerMessageDeflate().decode(rsv, data, True, None) == message
    with pytest.raises(MessageTooBig):
        PerMessageDeflate().decode(rsv, data, True, size - 1)
    # Frame by frame, the room shrinking by what each frame produced.
    decoder, room, out = PerMessageDeflate(), size, b""
    for start in range(0, len(data), 100):
        part = decoder.decode(rsv, data[start : start + 100], start + 100 >= len(data), room)
        room -= len(part)
        out += part
    assert out == message


@settings(max_examples=200)
@given(st.binary(max_size=200), st.booleans(), st.integers(0, 300) | st.none())
def test_garbage_never_escapes_as_a_zlib_error(payload: bytes, fin: bool, room: int | None) -> None:
    decoder = PerMessageDeflate()
    try:
        out = decoder.decode(0x40, payload, fin, room)
    except (InvalidPayloadData, MessageTooBig):
        return
    assert room is None or len(out) <= room


def compressed_frames(parts: list[bytes], opcode: int) -> bytes:
    """Server frames carrying one message compressed as it is split into ``parts``, sync-flushed per frame."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    frames = []
    for i, part in enumerate(parts):
        data = compressor.compress(part) + compressor.flush(zlib.Z_SYNC_FLUSH)
        last = i == len(parts) - 1
        if last:
            data = data[:-4]
        first_byte = (0x80 if last else 0) | ((0x40 | opcode) if i == 0 else 0)
        frames.append(_unmasked(first_byte, data))
    return b"".join(frames)


def _unmasked(first_byte: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 65536:
        return bytes((first_byte, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first_byte, 127)) + n.to_bytes(8, "big") + payload


BOMB = textwrap.dedent(
    """
    import sys, time, zlib
    from wsstack.connection import ClientConnection, ServerConnection
    from wsstack.events import ProtocolFailure
    from wsstack.options import Options

    def status(field):
        with open("/proc/self/status") as f:
            return int(f.read().split(field + ":")[1].split()[0]) * 1024

    LIMIT = 16 << 20
    # A self-contained 1 KiB segment that inflates to 1 MiB of zeros (a full
    # flush forgets the history, so segments can be concatenated at will).
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)

    def frame(first_byte, payload):
        n = len(payload)  # masked with a zero key, so the payload is as it is
        if n < 65536:
            return bytes((first_byte, 0xFE)) + n.to_bytes(2, "big") + bytes(4) + payload
        return bytes((first_byte, 0xFF)) + n.to_bytes(8, "big") + bytes(4) + payload

    if sys.argv[1] == "one-frame":  # 1 MiB inflating to 1 GiB
        wire = frame(0xC2, (segment * 1024)[:-4])
    else:  # 1024 frames of 1 KiB, each inflating to 1 MiB
        wire = frame(0x42, segment) + frame(0x00, segment) * 1022 + frame(0x80, segment[:-4])
    client = ClientConnection("ws://example.com/", Options(enable_compression=True))
    server = ServerConnection(Options(max_message_size=LIMIT, enable_compression=True))
    server.receive_data(client.data_to_send())
    server.events()
    server.accept()
    assert server.extensions and server.data_to_send()
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # start the peak (VmHWM) afresh, from here
    start = time.perf_counter()
    server.receive_data(wire)
    elapsed = time.perf_counter() - start
    growth = status("VmHWM") - before
    events = server.events()
    assert isinstance(events[-1], ProtocolFailure), events
    print(len(segment), len(wire), events[-1].code, growth, elapsed)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="measures the peak RSS through Linux /proc")
@pytest.mark.parametrize("mode", ["one-frame", "many-frames"])
def test_decompression_bomb_is_refused_in_bounded_memory_and_time(mode: str) -> None:
    limit = 16 << 20
    result = subprocess.run([sys.executable, "-c", BOMB, mode], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    segment, wire, code, growth, elapsed = result.stdout.split()
    assert int(segment) < 1100 and int(wire) < 1100 << 10  # 1 KiB per MiB: 1 GiB from 1 MiB
    assert code == "1009"
    assert int(growth) < 3 * limit, f"peak RSS grew by {int(growth) >> 20} MiB"
    assert float(elapsed) < 2.0


# -- negotiation, server side


def server_accepts(offer: str, **settings: Any) -> tuple[str, PerMessageDeflate] | None:
    ((name, params),) = parse_extensions([offer])
    assert name == "permessage-deflate"
    result = ServerPerMessageDeflate(**settings).accept(params)
    if result is None:
        return None
    answer, extension = result
    assert isinstance(extension, PerMessageDeflate)
    return format_extensions([(name, answer)]), extension


def agreed(extension: PerMessageDeflate) -> tuple[int, int, bool, bool]:
    return (
        extension.compress_window_bits,
        extension.decompress_window_bits,
        extension.compress_no_context_takeover,
        extension.decompress_no_context_takeover,
    )


PMD = "permessage-deflate"
SERVER_ACCEPTS = [
    # offer, server settings, answer, (server window, client window, server resets, client resets)
    (PMD, {}, PMD, (15, 15, False, False)),
    (f"{PMD}; client_max_window_bits", {}, PMD, (15, 15, False, False)),
    (
        f"{PMD}; client_max_window_bits",
        {"client_max_window_bits": 10},
        f"{PMD}; client_max_window_bits=10",
        (15, 10, False, False),
    ),
    (
        f"{PMD}; client_max_window_bits=12",
        {"client_max_window_bits": 10},
        f"{PMD}; client_max_window_bits=10",
        (15, 10, False, False),
    ),
    (
        f"{PMD}; client_max_window_bits=9",
        {"client_max_window_bits": 10},
        f"{PMD}; client_max_window_bits=9",
        (15, 9, False, False),
    ),
    (f"{PMD}; client_max_window_bits=12", {}, f"{PMD}; client_max_window_bits=12", (15, 12, False, False)),
    (f"{PMD}; client_max_window_bits=8", {}, f"{PMD}; client_max_window_bits=8", (15, 8, False, False)),
    (f"{PMD}; client_max_window_bits=15", {}, PMD, (15, 15, False, False)),
    (PMD, {"client_max_window_bits": 10}, PMD, (15, 15, False, False)),
    (f"{PMD}; server_max_window_bits=10", {}, f"{PMD}; server_max_window_bits=10", (10, 15, False, False)),
    (f'{PMD}; server_max_window_bits="10"', {}, f"{PMD}; server_max_window_bits=10", (10, 15, False, False)),
    (
        f"{PMD}; server_max_window_bits=12",
        {"server_max_window_bits": 10},
        f"{PMD}; server_max_window_bits=10",
        (10, 15, False, False),
    ),
    (f"{PMD}; server_max_window_bits=15", {}, f"{PMD}; server_max_window_bits=15", (15, 15, False, False)),
    (PMD, {"server_max_window_bits": 11}, f"{PMD}; server_max_window_bits=11", (11, 15, False, False)),
    (f"{PMD}; server_max_window_bits=8", {}, f"{PMD}; server_max_window_bits=8", (8, 15, False, False)),
    (f"{PMD}; server_no_context_takeover", {}, f"{PMD}; server_no_context_takeover", (15, 15, True, False)),
    (f"{PMD}; client_no_context_takeover", {}, f"{PMD}; client_no_context_takeover", (15, 15, False, True)),
    (
        PMD,
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        f"{PMD}; server_no_context_takeover; client_no_context_takeover",
        (15, 15, True, True),
    ),
    (
        f"{PMD}; client_max_window_bits=11; server_max_window_bits=9; client_no_context_takeover; server_no_context_takeover",
        {},
        f"{PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11",
        (9, 11, True, True),
    ),
]


@pytest.mark.parametrize(("offer", "settings", "answer", "expected"), SERVER_ACCEPTS)
def test_server_accepts(
    offer: str, settings: dict[str, Any], answer: str, expected: tuple[int, int, bool, bool]
) -> None:
    result = server_accepts(offer, **settings)
    assert result is not None
    assert result[0] == answer
    assert agreed(result[1]) == expected


SERVER_DECLINES = [
    "server_max_window_bits",
    "server_max_window_bits=7",
    "server_max_window_bits=16",
    "server_max_window_bits=08",
    "server_max_window_bits=1O",
    "server_max_window_bits=-9",
    "client_max_window_bits=7",
    "client_max_window_bits=16",
    "client_max_window_bits=015",
    "server_no_context_takeover=1",
    'client_no_context_takeover="true"',
    "server_no_context_takeover; server_no_context_takeover",
    "client_no_context_takeover; client_no_context_takeover",
    "server_max_window_bits=10; server_max_window_bits=10",
    "client_max_window_bits; client_max_window_bits=10",
    "x-unknown=1",
    "mux",
    "SERVER_NO_CONTEXT_TAKEOVER",
]


@pytest.mark.parametrize("params", SERVER_DECLINES)
def test_server_declines_an_invalid_offer(params: str) -> None:
    assert server_accepts(f"{PMD}; {params}") is None


def server_answer_over_the_wire(offers: str, options: Options = DEFLATE) -> tuple[ServerConnection, str | None]:
    request = ClientHandshake("example.com", None, "/", extensions=offers).request()
    server = ServerConnection(options)
    server.receive_data(serialize_request(request))
    assert isinstance(server.events()[0], RequestReceived)
    server.accept()
    head = server.data_to_send().decode("latin-1")
    answers = [
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("sec-websocket-extensions:")
    ]
    assert len(answers) <= 1
    return server, answers[0] if answers else None


def test_server_takes_the_first_acceptable_of_several_offers() -> None:
    offers = f"{PMD}; server_max_window_bits=7, x-other, {PMD}; client_max_window_bits=10; mux, {PMD}; server_max_window_bits=9, {PMD}"
    server, answer = server_answer_over_the_wire(offers)
    assert answer == f"{PMD}; server_max_window_bits=9"
    assert len(server.extensions) == 1 and agreed(server.extensions[0]) == (9, 15, False, False)  # type: ignore[arg-type]


def test_server_declining_every_offer_answers_without_extensions() -> None:
    server, answer = server_answer_over_the_wire(f"{PMD}; server_max_window_bits=16, {PMD}; x=1")
    assert answer is None and server.extensions == [] and server.state is State.OPEN


def test_server_without_compression_ignores_offers() -> None:
    server, answer = server_answer_over_the_wire(PMD, Options())
    assert answer is None and server.extensions == []


# -- negotiation, client side


CLIENT_OFFERS = [
    ({}, f"{PMD}; client_max_window_bits"),
    ({"client_max_window_bits": 10}, f"{PMD}; client_max_window_bits"),
    ({"offer_client_max_window_bits": False}, PMD),
    (
        {"server_no_context_takeover": True, "client_no_context_takeover": True, "server_max_window_bits": 9},
        f"{PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits",
    ),
]


@pytest.mark.parametrize(("settings", "offer"), CLIENT_OFFERS)
def test_client_offers(settings: dict[str, Any], offer: str) -> None:
    factory = ClientPerMessageDeflate(**settings)
    assert format_extensions([(PMD, params) for params in factory.offers()]) == offer


def client_accepts(response: str, **settings: Any) -> PerMessageDeflate:
    ((_, params),) = parse_extensions([response])
    extension = ClientPerMessageDeflate(**settings).accept(params)
    assert isinstance(extension, PerMessageDeflate)
    return extension


CLIENT_ACCEPTS = [
    # client settings, response, (client window, server window, client resets, server resets)
    ({}, PMD, (15, 15, False, False)),
    ({}, f"{PMD}; server_no_context_takeover", (15, 15, False, True)),
    ({}, f"{PMD}; client_no_context_takeover", (15, 15, True, False)),
    ({"client_no_context_takeover": True}, PMD, (15, 15, True, False)),
    ({"server_no_context_takeover": True}, f"{PMD}; server_no_context_takeover", (15, 15, False, True)),
    ({}, f"{PMD}; server_max_window_bits=10", (15, 10, False, False)),
    ({}, f"{PMD}; server_max_window_bits=8", (15, 8, False, False)),
    ({"server_max_window_bits": 10}, f"{PMD}; server_max_window_bits=10", (15, 10, False, False)),
    ({"server_max_window_bits": 10}, f"{PMD}; server_max_window_bits=9", (15, 9, False, False)),
    ({"server_max_window_bits": 8}, f"{PMD}; server_max_window_bits=8", (15, 8, False, False)),
    ({}, f"{PMD}; client_max_window_bits=10", (10, 15, False, False)),
    ({}, f"{PMD}; client_max_window_bits=8", (8, 15, False, False)),
    ({"client_max_window_bits": 12}, f"{PMD}; client_max_window_bits=12", (12, 15, False, False)),
    ({"client_max_window_bits": 12}, f"{PMD}; client_max_window_bits=9", (9, 15, False, False)),
    # A server may answer more than this side's own setting; the smaller one is used.
    ({"client_max_window_bits": 12}, f"{PMD}; client_max_window_bits=15", (12, 15, False, False)),
    ({"client_max_window_bits": 12}, PMD, (12, 15, False, False)),
    (
        {"server_max_window_bits": 12},
        f"{PMD}; client_max_window_bits=9; server_max_window_bits=11; client_no_context_takeover; server_no_context_takeover",
        (9, 11, True, True),
    ),
]


@pytest.mark.parametrize(("settings", "response", "expected"), CLIENT_ACCEPTS)
def test_client_accepts(settings: dict[str, Any], response: str, expected: tuple[int, int, bool, bool]) -> None:
    assert agreed(client_accepts(response, **settings)) == expected


CLIENT_REJECTS = [
    ({"server_no_context_takeover": True}, PMD, "server_no_context_takeover was requested"),
    ({"server_max_window_bits": 10}, PMD, "server_max_window_bits was requested"),
    ({"server_max_window_bits": 10}, f"{PMD}; server_max_window_bits=11", "exceeds"),
    ({"offer_client_max_window_bits": False}, f"{PMD}; client_max_window_bits=10", "was not offered"),
    ({}, f"{PMD}; client_max_window_bits", "invalid client_max_window_bits"),
    ({}, f"{PMD}; server_max_window_bits", "invalid server_max_window_bits"),
    ({}, f"{PMD}; server_max_window_bits=16", "invalid server_max_window_bits"),
    ({}, f"{PMD}; server_max_window_bits=7", "invalid server_max_window_bits"),
    ({}, f"{PMD}; client_max_window_bits=09", "invalid client_max_window_bits"),
    ({}, f"{PMD}; server_no_context_takeover=1", "takes no value"),
    ({}, f"{PMD}; client_no_context_takeover; client_no_context_takeover", "duplicate"),
    ({}, f"{PMD}; server_max_window_bits=9; server_max_window_bits=9", "duplicate"),
    ({}, f"{PMD}; x-unknown", "unknown parameter"),
]


@pytest.mark.parametrize(("settings", "response", "problem"), CLIENT_REJECTS)
def test_client_rejects(settings: dict[str, Any], response: str, problem: str) -> None:
    with pytest.raises(InvalidHandshake, match=problem):
        client_accepts(response, **settings)


def test_client_fails_the_handshake_on_a_bad_answer() -> None:
    client = ClientConnection("ws://example.com/chat", Options(enable_compression=True, decompression_window_bits=10))
    request_bytes = client.data_to_send()
    server = ServerConnection()
    server.receive_data(request_bytes)
    server.events()
    server.accept(extensions=[])
    answer = server.data_to_send().replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n\r\n"
    )
    events = feed(client, answer)
    assert isinstance(events[0], HandshakeFailed) and client.state is State.CLOSED


def test_client_rejects_a_second_deflate_answer() -> None:
    client = ClientConnection("ws://example.com/chat", DEFLATE)
    server = ServerConnection(DEFLATE)
    server.receive_data(client.data_to_send())
    server.events()
    server.accept()
    answer = server.data_to_send().replace(b"permessage-deflate", b"permessage-deflate, permessage-deflate")
    assert isinstance(feed(client, answer)[0], HandshakeFailed)


@pytest.mark.parametrize(
    "settings",
    [
        {"server_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"level": 10},
        {"memory_level": 0},
        {"threshold": -1},
    ],
)
def test_factories_refuse_bad_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(**settings)
    with pytest.raises(ValueError):
        ClientPerMessageDeflate(**settings)


def test_options_reach_both_sides() -> None:
    client_options = Options(
        enable_compression=True,
        compression_window_bits=11,
        decompression_window_bits=10,
        client_no_context_takeover=True,
    )
    server_options = Options(enable_compression=True, compression_window_bits=12, decompression_window_bits=9)
    client, server = compressed_pair(server_options, client_options)
    # The client asked for a 10-bit server window and offered 11 bits of its own; the server lowered it to 9.
    assert agreed(client.extensions[0]) == (9, 10, True, False)  # type: ignore[arg-type]
    assert agreed(server.extensions[0]) == (10, 9, False, True)  # type: ignore[arg-type]


# -- round trips over every parameter combination

windows = st.integers(8, 15)
deflate_options = st.builds(
    Options,
    enable_compression=st.just(True),
    compression_level=st.sampled_from([-1, 0, 1, 6, 9]),
    compression_memory_level=st.sampled_from([1, 5, 8, 9]),
    compression_window_bits=windows,
    decompression_window_bits=windows,
    compression_threshold=st.sampled_from([0, 0, 0, 20, 300]),
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
)
payloads = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.binary(min_size=1, max_size=30).map(lambda b: b * 40),
    st.text(alphabet="é€𝄞ab ", min_size=1, max_size=20).map(lambda s: s * 30),
)
plans = st.lists(st.tuples(st.booleans(), payloads, st.none() | st.integers(1, 70)), min_size=1, max_size=8)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(deflate_options, deflate_options, plans, st.data())
def test_round_trips(server_options: Options, client_options: Options, plan: list[Any], data: st.DataObject) -> None:
    client, server = compressed_pair(server_options, client_options)
    ours, theirs = client.extensions[0], server.extensions[0]
    assert isinstance(ours, PerMessageDeflate) and isinstance(theirs, PerMessageDeflate)
    assert ours.compress_window_bits <= theirs.decompress_window_bits
    assert theirs.compress_window_bits <= ours.decompress_window_bits
    assert ours.compress_no_context_takeover or not theirs.decompress_no_context_takeover
    assert theirs.compress_no_context_takeover or not ours.decompress_no_context_takeover
    for from_client, message, fragment_size in plan:
        sender, receiver = (client, server) if from_client else (server, client)
        sender.send(message, fragment_size)
        wire = sender.data_to_send()
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
        events: list[object] = []
        for start, end in zip([0, *cuts], [*cuts, len(wire)]):
            if start < end:  # b"" would mean end of stream
                events += feed(receiver, wire[start:end])
        expected = TextMessage(message) if isinstance(message, str) else BinaryMessage(message)
        assert events == [expected]


# -- interoperation with the websockets package, through bytes, both directions


def ws_frames_to_messages(frames: list[Any]) -> list[object]:
    messages: list[object] = []
    parts: list[bytes] = []
    opcode = None
    for frame in frames:
        if frame.opcode in (WsOpcode.TEXT, WsOpcode.BINARY):
            opcode, parts = frame.opcode, []
        elif frame.opcode is not WsOpcode.CONT:
            continue
        parts.append(bytes(frame.data))
        if frame.fin:
            payload = b"".join(parts)
            messages.append(TextMessage(payload.decode()) if opcode is WsOpcode.TEXT else BinaryMessage(payload))
    return messages


def websockets_client_to_our_server(factory: WsClientDeflate, options: Options) -> tuple[WsClient, ServerConnection]:
    peer = WsClient(parse_uri("ws://example.com/chat"), extensions=[factory])
    peer.send_request(peer.connect())
    server = ServerConnection(options)
    server.receive_data(b"".join(peer.data_to_send()))
    assert isinstance(server.events()[0], RequestReceived)
    server.accept()
    peer.receive_data(server.data_to_send())
    peer.events_received()
    assert peer.handshake_exc is None
    return peer, server


def our_client_to_websockets_server(factory: WsServerDeflate, options: Options) -> tuple[ClientConnection, WsServer]:
    client = ClientConnection("ws://example.com/chat", options)
    peer = WsServer(extensions=[factory])
    peer.receive_data(client.data_to_send())
    (request,) = peer.events_received()
    assert isinstance(request, WsRequest)
    peer.send_response(peer.accept(request))
    client.receive_data(b"".join(peer.data_to_send()))
    client.events()
    assert client.state is State.OPEN
    return client, peer


INTEROP_MESSAGES: list[str | bytes] = [
    "Hello",
    "Hello",
    '{"id": 1, "name": "alpha", "tags": ["x", "y"]}' * 40,
    b"\x00\x01\x02" * 700,
    "",
    b"",
    "é€𝄞" * 500,
    bytes(range(256)) * 8,
]


def exchange_with_peer(ours: Connection, peer: WsClient | WsServer, compressed: bool) -> None:
    """Send every message each way, whole and fragmented, and check both sides see them intact."""
    for fragment_size in (None, 100):
        for message in INTEROP_MESSAGES:
            ours.send(message, fragment_size)
            wire = ours.data_to_send()
            assert bool(wire[0] & 0x40) == compressed
            peer.receive_data(wire)
            assert ws_frames_to_messages(peer.events_received()) == [
                TextMessage(message) if isinstance(message, str) else BinaryMessage(message)
            ]
    for message in INTEROP_MESSAGES:
        data = message.encode() if isinstance(message, str) else message
        send = peer.send_text if isinstance(message, str) else peer.send_binary
        send(data)
        if len(data) > 200:  # and once more in three frames, each compressed and flushed on its own
            send(data[:100], fin=False)
            peer.send_continuation(data[100:200], fin=False)
            peer.send_continuation(data[200:], fin=True)
        wire = b"".join(peer.data_to_send())
        assert bool(wire[0] & 0x40) == compressed
        expected = TextMessage(message) if isinstance(message, str) else BinaryMessage(message)
        assert feed(ours, wire) == [expected] * (2 if len(data) > 200 else 1)


WS_CLIENT_SETTINGS = [
    {},
    {"client_max_window_bits": 10},
    {"client_max_window_bits": None},
    {"server_max_window_bits": 8},
    {"server_max_window_bits": 11, "client_max_window_bits": 9},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_no_context_takeover": True, "client_no_context_takeover": True, "server_max_window_bits": 9},
]
OUR_SERVER_OPTIONS = [
    DEFLATE,
    Options(enable_compression=True, compression_window_bits=10, decompression_window_bits=9),
    Options(enable_compression=True, server_no_context_takeover=True, client_no_context_takeover=True),
    Options(enable_compression=True, compression_level=1, compression_memory_level=2, compression_window_bits=8),
]


@pytest.mark.parametrize("options", OUR_SERVER_OPTIONS)
@pytest.mark.parametrize("settings", WS_CLIENT_SETTINGS)
def test_interop_websockets_client_with_our_server(settings: dict[str, Any], options: Options) -> None:
    peer, server = websockets_client_to_our_server(WsClientDeflate(**settings), options)
    assert [e.name for e in server.extensions] == ["permessage-deflate"]
    exchange_with_peer(server, peer, compressed=True)


WS_SERVER_SETTINGS = [
    {},
    {"server_max_window_bits": 12, "client_max_window_bits": 12, "compress_settings": {"memLevel": 5}},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"client_max_window_bits": 9, "require_client_max_window_bits": True},
    {"server_max_window_bits": 9},
]
OUR_CLIENT_OPTIONS = [
    DEFLATE,
    Options(enable_compression=True, compression_window_bits=11, decompression_window_bits=10),
    Options(enable_compression=True, server_no_context_takeover=True, client_no_context_takeover=True),
    Options(enable_compression=True, compression_window_bits=8, compression_threshold=10),
]


@pytest.mark.parametrize("options", OUR_CLIENT_OPTIONS)
@pytest.mark.parametrize("settings", WS_SERVER_SETTINGS)
def test_interop_our_client_with_websockets_server(settings: dict[str, Any], options: Options) -> None:
    client, peer = our_client_to_websockets_server(WsServerDeflate(**settings), options)
    assert [e.name for e in client.extensions] == ["permessage-deflate"]
    # A threshold leaves the short messages uncompressed, so check RSV1 only without one.
    if options.compression_threshold:
        client.send_text("Hello")
        assert client.data_to_send()[0] == 0x81
    else:
        exchange_with_peer(client, peer, compressed=True)


def test_interop_websockets_server_declines_a_window_of_8() -> None:
    # websockets cannot compress with a 256-byte window, so it declines; the connection opens uncompressed.
    client, peer = our_client_to_websockets_server(
        WsServerDeflate(), Options(enable_compression=True, decompression_window_bits=8)
    )
    assert client.extensions == []
    exchange_with_peer(client, peer, compressed=False)


def test_interop_masked_frames_from_our_client_decode_in_websockets() -> None:
    client, peer = our_client_to_websockets_server(WsServerDeflate(), DEFLATE)
    client.send_text("Hello")
    wire = client.data_to_send()
    assert wire[:2] == b"\xc1\x87"
    peer.receive_data(wire)
    assert ws_frames_to_messages(peer.events_received()) == [TextMessage("Hello")]
    assert masked(0xC1, bytes.fromhex("f248cdc9c90700"), wire[2:6]) == wire
