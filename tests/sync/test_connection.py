"""The blocking ``WebSocket``: recv and frame mode, closing, pings and the heartbeat, flow control, threads."""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from helpers import masked
from sync_helpers import (
    HANDSHAKE,
    STEP,
    Message,
    echo_server,
    on_io_thread,
    only_connection,
    port_of,
    raw_connection,
    read_all,
    read_frame,
    serving,
)
from waiting import bounded, wait_until
from wsstack.errors import ConnectionClosed, InvalidState
from wsstack.frames import Opcode
from wsstack.options import Options
from wsstack.sync import Context, Server, connect
from wsstack.sync import connection as sync_connection


@bounded(30)
def test_recv_frame_sees_control_frames() -> None:
    frames: list[Any] = []
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        # Frame mode begins at the first recv_frame(); "ready" tells the client it has.
        frames.append(ws.recv_frame(timeout=STEP))
        ws.send("ready")
        while (frame := ws.recv_frame(timeout=STEP)) is not None:
            frames.append(frame)
            if frame.opcode == Opcode.CLOSE:
                break

    with serving(server) as url:
        with ws_connect(url) as client:
            client.send("start")
            assert client.recv(timeout=STEP) == "ready"
            client.send(["frag", "mented"])
            client.ping(b"p")
            client.send(b"bin")
        wait_until(lambda: len(frames) == 7)
    assert [(f.opcode, f.payload, f.fin) for f in frames] == [
        (Opcode.TEXT, b"start", True),
        (Opcode.TEXT, b"frag", False),
        (Opcode.CONTINUATION, b"mented", False),
        (Opcode.CONTINUATION, b"", True),  # websockets ends a fragmented send with an empty frame
        (Opcode.PING, b"p", True),
        (Opcode.BINARY, b"bin", True),
        (Opcode.CLOSE, b"\x03\xe8", True),
    ]


@bounded(30)
def test_recv_timeout_then_more_messages(echo_url: str) -> None:
    with connect(echo_url) as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        assert 0.15 < time.monotonic() - started < 2
        ws.send("after the timeout")
        assert ws.recv(timeout=STEP) == "after the timeout"


@bounded(30)
@pytest.mark.parametrize("mode", ["messages", "frames"])
def test_what_recv_returned_survives_the_reads_after_it(echo_url: str, mode: str) -> None:
    """Direct reads reuse their buffers: every message kept from one must stay as it was after the next reads."""
    rng = random.Random(7)
    sizes = [rng.choice((0, 1, 125, 126, 65535, 65536, 100_000, 300_000)) for _ in range(40)]
    sent: list[Message] = [
        rng.randbytes(size) if index % 2 else "".join(rng.choice("aé€😀") for _ in range(size // 4))
        for index, size in enumerate(sizes)
    ]
    with connect(echo_url, options=Options(max_message_size=1 << 20)) as ws:
        for message in sent:
            ws.send(message)
        if mode == "messages":
            kept = [ws.recv(timeout=STEP) for _ in sent]
        else:
            frames = [ws.recv_frame(timeout=STEP) for _ in sent]
            kept = [frame.payload.decode() if frame.opcode == Opcode.TEXT else frame.payload for frame in frames]
        assert kept == sent


@bounded(30)
def test_a_recv_idle_for_long_gives_the_socket_back_and_still_gets_the_message(
    echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_connection, "DIRECT_IDLE", 0.2)
    with connect(echo_url) as ws:
        transport = ws._transport
        for round_ in range(2):  # the recv() after a handed-back one reads directly again
            got: Future[Message | None] = Future()
            reader = threading.Thread(target=lambda result=got: result.set_result(ws.recv(timeout=STEP)))
            reader.start()
            ident = reader.ident
            wait_until(lambda ident=ident: transport.direct == ident, timeout=STEP)
            wait_until(lambda: transport.direct == 0, timeout=STEP)  # handed back after DIRECT_IDLE
            assert not got.done()  # still waiting, now to be woken
            ws.send(f"after idling {round_}")
            assert got.result(timeout=STEP) == f"after idling {round_}"
            reader.join()


@bounded(30)
def test_server_initiated_close_reaches_client_with_code_and_reason() -> None:
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ctx.upgrade_to_websocket().close(4000, "custom")

    with serving(server) as url:
        ws = connect(url)
        assert ws.recv(timeout=STEP) is None
        assert (ws.close_code, ws.close_reason) == (4000, "custom")
        with pytest.raises(ConnectionClosed):
            ws.send("late")
        ws.wait_closed(STEP)


@bounded(30)
def test_client_initiated_close_reaches_server_with_code_and_reason() -> None:
    seen: Future[tuple[int | None, str]] = Future()
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        assert ws.recv(timeout=STEP) is None
        seen.set_result((ws.close_code, ws.close_reason))

    with serving(server) as url:
        ws = connect(url)
        started = time.monotonic()
        ws.close(4001, "client leaves")
        # The server answers and drops TCP at once: no wait for the close timeout.
        assert time.monotonic() - started < 2
        assert seen.result(STEP) == (4001, "client leaves")
        # The server's answer echoes the code and the reason.
        assert (ws.close_code, ws.close_reason) == (4001, "client leaves")


@bounded(30)
def test_recv_frame_tells_a_close_frames_code_and_reason() -> None:
    seen: Future[tuple[int | None, str | None]] = Future()
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        # Frame mode begins at the first recv_frame(); "ready" tells the client it has.
        ws.recv_frame(timeout=STEP)
        ws.send("ready")
        while (frame := ws.recv_frame(timeout=STEP)) is not None:
            if frame.opcode == Opcode.CLOSE:
                seen.set_result((frame.close_code, frame.close_reason))

    with serving(server) as url:
        with ws_connect(url) as client:
            client.send("start")
            assert client.recv(timeout=STEP) == "ready"
            client.close(4001, "going ✓")
        assert seen.result(STEP) == (4001, "going ✓")
        received = client.protocol.close_rcvd  # the server's answer, as websockets parsed it
        assert received is not None and (received.code, received.reason) == (4001, "going ✓")


@bounded(30)
@pytest.mark.parametrize("value", [5, True, 10**9, {}, {"a": 1}, None], ids=repr)
def test_sending_what_is_not_a_message_raises_type_error_and_sends_nothing(echo_url: str, value: Any) -> None:
    with connect(echo_url) as ws:
        for call in (ws.send, ws.send_binary):
            with pytest.raises(TypeError, match="bytes-like object, not"):
                call(value)
        for control in (ws.ping, ws.pong):
            with pytest.raises(TypeError, match="takes str or a bytes-like object, not"):
                control(value)
        # Nothing reached the wire: the next message is the first the server saw.
        ws.send(bytearray(b"ok"))
        assert ws.recv(timeout=STEP) == b"ok"


@bounded(30)
def test_client_close_times_out_when_the_server_never_answers() -> None:
    from wsstack.handshake import accept_key

    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def mute_server() -> None:
            conn, _ = listener.accept()
            accepted.append(conn)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            match = re.search(rb"Sec-WebSocket-Key: (\S+)", request)
            assert match is not None
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(match.group(1).decode()).encode() + b"\r\n\r\n"
            )

        threading.Thread(target=mute_server, daemon=True).start()
        ws = connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", options=Options(close_timeout=0.3))
        started = time.monotonic()
        ws.close()
        assert 0.25 < time.monotonic() - started < 2
        assert ws.close_code == 1006 and not ws.is_open
        for conn in accepted:
            conn.close()


@bounded(30)
@pytest.mark.parametrize("close_timeout", [0.3, 0])
def test_server_close_times_out_when_the_client_never_answers(close_timeout: float) -> None:
    """After ``close_timeout`` seconds; with 0, as soon as the close frame is out."""
    outcome: Future[tuple[float, int | None]] = Future()
    server = Server(Options(close_timeout=close_timeout))

    @server.get("/ws")
    def closer(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        started = time.monotonic()
        ws.close(4000, "going")
        outcome.set_result((time.monotonic() - started, ws.close_code))

    with serving(server), raw_connection(server.port) as sock:
        first, payload = read_frame(sock)
        assert first == 0x88 and payload == (4000).to_bytes(2, "big") + b"going"
        elapsed, code = outcome.result(STEP)  # never answered
        assert close_timeout - 0.05 < elapsed < close_timeout + 1.5
        assert code == 1006  # the closing handshake did not complete


@bounded(30)
def test_peer_protocol_error_is_failed_with_1002(echo_url: str) -> None:
    port = port_of(echo_url)
    with raw_connection(port) as sock:
        sock.sendall(b"\x81\x05hello")  # unmasked client frame
        reason = b"client frame is not masked"
        assert read_all(sock) == bytes((0x88, 2 + len(reason))) + b"\x03\xea" + reason


@bounded(30)
def test_reply_to_earlier_message_precedes_the_failure_close(echo_url: str) -> None:
    """Autobahn's strict behaviour: echo what came before a protocol error, then fail."""
    port = port_of(echo_url)
    # In the same packet as the request: a text frame, then one with RSV2 set.
    request = HANDSHAKE + masked(0x81, b"hi") + masked(0xA1, b"no")
    with raw_connection(port, request) as sock:
        data = read_all(sock)
        head, _, frames = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert frames[:4] == b"\x81\x02hi"
        assert frames[4] == 0x88 and frames[6:8] == (1002).to_bytes(2, "big")


@bounded(30)
def test_pings_are_answered_while_the_application_does_not_read() -> None:
    release = threading.Event()
    server = Server()

    @server.get("/ws")
    def busy(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        release.wait(STEP)  # busy elsewhere: no recv()
        ws.recv(timeout=STEP)

    with serving(server) as url, connect(url) as ws:
        for _ in range(3):
            assert 0 <= ws.ping().result(STEP) < 5
        release.set()


@bounded(30)
def test_pings_are_answered_after_the_application_stops_reading() -> None:
    """A thread that read directly leaves the socket unwatched only until the next linger tick."""
    read_one = threading.Event()
    release = threading.Event()
    second: Future[Any] = Future()
    server = Server()

    @server.get("/ws")
    def reads_once(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        assert ws.recv(timeout=STEP) == "one"
        read_one.set()
        release.wait(STEP)  # busy elsewhere from now on
        second.set_result(ws.recv(timeout=STEP))

    with serving(server) as url, connect(url) as ws:
        ws.send("one")
        assert read_one.wait(STEP)  # the handler's direct read is over: the socket lingers unwatched
        for _ in range(3):
            assert 0 <= ws.ping().result(STEP) < 1
        ws.send("two")
        release.set()
        assert second.result(STEP) == "two"


@bounded(30)
def test_ping_right_after_recv_is_answered_at_once(echo_url: str) -> None:
    with connect(echo_url) as ws:
        for _ in range(20):
            ws.send("x")
            assert ws.recv(timeout=STEP) == "x"
            # The client thread read directly; its ping must not wait for a linger tick.
            assert ws.ping().result(STEP) < 0.04


@bounded(30)
def test_ping_futures_fail_when_the_connection_is_lost() -> None:
    server = Server(Options(auto_pong=False))

    @server.get("/ws")
    def silent(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        ws.recv(timeout=STEP)
        ws.close()

    with serving(server) as url:
        ws = connect(url)
        waiter = ws.ping(b"never answered")
        with pytest.raises(ValueError):
            ws.ping(b"never answered")
        ws.send("go")
        with pytest.raises(ConnectionClosed):
            waiter.result(STEP)


@bounded(30)
@pytest.mark.parametrize("ending", ["close", "heartbeat"])
def test_a_ping_to_a_silent_peer_fails_with_connection_closed_when_the_connection_ends(ending: str) -> None:
    outcome: Future[BaseException | None] = Future()
    heartbeat = {"ping_interval": 0.1, "ping_timeout": 0.2} if ending == "heartbeat" else {"ping_interval": None}
    server = Server(Options(close_timeout=0.3, **heartbeat))  # type: ignore[arg-type]

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        ping = ws.ping(b"are you there")
        if ending == "close":
            ws.close()  # no answer: the close times out and the connection is dropped
        try:
            ping.result(STEP)
        except BaseException as exc:
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    with serving(server) as url, raw_connection(port_of(url)):  # handshakes, then never reads nor answers
        error = outcome.result(STEP)
        assert isinstance(error, ConnectionClosed), error
        assert error.code == (1011 if ending == "heartbeat" else 1006)


@bounded(30)
def test_manual_pong_and_ping_in_frame_mode() -> None:
    server = Server(Options(auto_pong=False))

    @server.get("/ws")
    def manual(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        frame = ws.recv_frame(timeout=STEP)
        assert frame is not None and frame.opcode == Opcode.PING
        ws.pong(frame.payload)
        ws.recv_frame(timeout=STEP)

    with serving(server) as url, ws_connect(url) as client:
        client.ping(b"by hand").wait(STEP)


@bounded(30)
def test_heartbeat_detects_a_silent_peer_and_closes_1011() -> None:
    closed: Future[int | None] = Future()
    server = Server(Options(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.5))

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        ws.recv(timeout=STEP)
        closed.set_result(ws.close_code)

    with serving(server), raw_connection(server.port) as sock:
        # Never answer: read the ping, then the close frame.
        first, _ = read_frame(sock)
        assert first == 0x89
        first, payload = read_frame(sock)
        assert first == 0x88 and payload[:2] == (1011).to_bytes(2, "big")
        assert closed.result(STEP) == 1011
        assert read_all(sock) == b""


@bounded(30)
def test_heartbeat_on_the_client_side() -> None:
    server = Server(Options(auto_pong=False))

    @server.get("/ws")
    def mute(ctx: Context) -> None:
        ctx.upgrade_to_websocket().wait_closed(STEP)

    with serving(server) as url:
        ws = connect(url, options=Options(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.5))
        assert ws.recv(timeout=STEP) is None
        assert ws.close_code == 1011


def pong_counting_echo_server(options: Options, pongs: int, answered: threading.Event) -> Server:
    """An echo server in frame mode, where its heartbeat's pongs show: ``answered`` is set at the ``pongs``-th."""
    server = Server(options)

    @server.get("/ws")
    def echo(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        seen = 0
        while (frame := ws.recv_frame(timeout=STEP)) is not None:
            if frame.opcode == Opcode.PONG:
                seen += 1
                if seen == pongs:
                    answered.set()
            elif frame.opcode == Opcode.TEXT:
                ws.send(frame.payload.decode())
            elif frame.opcode == Opcode.BINARY:
                ws.send(frame.payload)

    return server


@bounded(30)
def test_heartbeat_keeps_a_live_peer() -> None:
    answered = threading.Event()
    server = pong_counting_echo_server(Options(ping_interval=0.05, ping_timeout=0.5), 8, answered)
    with serving(server) as url, connect(url) as ws:
        # Eight heartbeats answered by a client that is not in recv(): longer than one ping_timeout.
        assert answered.wait(STEP)
        ws.send("still here")
        assert ws.recv(timeout=STEP) == "still here"
        assert ws.is_open


@bounded(30)
def test_fast_sender_pauses_reading() -> None:
    reading = threading.Event()
    server = Server(Options(max_queue=4))

    @server.get("/ws")
    def lazy(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        reading.wait(STEP)
        count = 0
        while ws.recv(timeout=STEP) is not None:
            count += 1
            if count == 500:
                ws.send(str(count))

    with serving(server) as url, connect(url) as ws:
        for _ in range(500):
            ws.send(b"m" * 1000, timeout=STEP)
        server_ws = only_connection(server)
        wait_until(lambda: server_ws._session.reading_paused)
        # Nothing to wait for: a read despite the pause would take no more than this to show.
        time.sleep(0.2)
        # Bounded by max_queue plus what one read hands over (256 KiB).
        assert len(server_ws._queue) <= 4 + 262144 // 1000
        reading.set()
        assert ws.recv(timeout=STEP) == "500"


@bounded(30)
def test_close_while_reading_is_paused_completes_promptly() -> None:
    """The peer's close reply sits behind the messages the full queue had no room for."""
    outcome: Future[tuple[float, int | None]] = Future()
    server = Server(Options(max_queue=4, close_timeout=3))

    @server.get("/ws")
    def not_reading(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        wait_until(lambda: ws._session.reading_paused)
        started = time.monotonic()
        ws.close()
        outcome.set_result((time.monotonic() - started, ws.close_code))

    with serving(server) as url, connect(url) as ws:
        try:
            for _ in range(2000):
                ws.send(b"x" * 1000, timeout=STEP)
        except ConnectionClosed:
            pass  # the server's close came first: the kernel's buffers were smaller than 2 MB
        assert ws.recv(timeout=STEP) is None
        elapsed, code = outcome.result(STEP)
        assert elapsed < 1 and code == 1000


@bounded(30)
def test_slow_reader_blocks_senders_within_bounds_and_close_frees_them() -> None:
    progress: list[int] = []
    timed_out = threading.Event()
    outcome: Future[BaseException | None] = Future()
    server = Server(Options(write_limit=65536))

    @server.get("/ws")
    def flood(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        chunk = b"z" * 65536
        try:
            with pytest.raises(TimeoutError):
                for i in range(2000):
                    ws.send(chunk, timeout=0.5)
                    progress.append(i)
            timed_out.set()
            for _ in range(2000):
                ws.send(chunk)  # blocks until the connection goes away
            outcome.set_result(None)
        except BaseException as exc:
            outcome.set_result(exc)

    with serving(server):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(HANDSHAKE)
        server_ws = only_connection(server)
        wait_until(lambda: len(progress) > 0 and server_ws._transport.buffered > 0)
        wait_until(lambda: timed_out.is_set() or outcome.done())
        assert not outcome.done(), outcome.result()  # the first loop ended in TimeoutError, not otherwise
        # The sender waits: at most the kernel's buffers plus one message above the limit.
        assert len(progress) < 200, len(progress)
        assert server_ws._transport.buffered <= 65536 + 65536, server_ws._transport.buffered
        sock.close()  # a reset: the blocked sender must wake up
        assert isinstance(outcome.result(STEP), ConnectionClosed)


def slow_reader(port: int) -> socket.socket:
    """An upgraded raw connection with a small receive buffer, so the server's output backs up soon."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(STEP)
    sock.connect(("127.0.0.1", port))
    sock.sendall(HANDSHAKE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def block_io_thread(server: Server, sock: socket.socket) -> threading.Event:
    """Hold the server's I/O thread until the returned event is set, longer than ``sock`` waits for a read."""
    blocked, free = threading.Event(), threading.Event()
    sock.settimeout(STEP / 2)

    def hold() -> None:
        blocked.set()
        free.wait(2 * STEP)

    server._reactor.call_soon(hold)
    assert blocked.wait(STEP)
    return free


@bounded(30)
def test_a_sender_waiting_for_room_flushes_on_its_own_thread() -> None:
    sent = threading.Event()
    server = Server(Options(write_limit=65536))

    @server.get("/ws")
    def flood(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        ws.send(b"z" * (4 << 20))  # more than the kernel's buffers: the rest waits in user space
        ws.send("end")  # waits for room
        sent.set()
        ws.wait_closed(STEP)

    with serving(server):
        sock = slow_reader(server.port)
        server_ws = only_connection(server)
        wait_until(lambda: server_ws._transport.buffered > 65536)
        free = block_io_thread(server, sock)
        try:
            assert read_frame(sock) == (0x82, b"z" * (4 << 20))
            assert read_frame(sock) == (0x81, b"end")
            assert sent.wait(STEP)
        finally:
            free.set()
        sock.close()


@bounded(30)
def test_a_handler_thread_closes_tcp_itself_after_the_closing_handshake() -> None:
    server = echo_server()
    with serving(server):
        sock = raw_connection(server.port)
        sock.sendall(masked(0x81, b"hi"))
        assert read_frame(sock) == (0x81, b"hi")  # the handler reads directly from now on
        free = block_io_thread(server, sock)
        try:
            sock.sendall(masked(0x88, (1000).to_bytes(2, "big")))
            assert read_frame(sock) == (0x88, (1000).to_bytes(2, "big"))
            assert sock.recv(1) == b""  # the server closed first, without its I/O thread
        finally:
            free.set()
        wait_until(lambda: not server.connections)  # connection_lost still ran, on the I/O thread
        sock.close()


def outcome_of(call: Any) -> Future[object]:
    """Run ``call()`` on a thread of its own; the future holds what it returned or raised."""
    outcome: Future[object] = Future()

    def run() -> None:
        try:
            outcome.set_result(call())
        except BaseException as exc:
            outcome.set_result(exc)

    threading.Thread(target=run, daemon=True).start()
    return outcome


@bounded(30)
def test_two_senders_waiting_for_room_take_turns_to_flush() -> None:
    """One flushes on its own thread; the other waits for it, then flushes in turn: every frame arrives whole."""
    finished: list[Future[object]] = []
    server = Server(Options(write_limit=65536))
    size = 1 << 20

    @server.get("/ws")
    def two(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()

        def sender(fill: bytes) -> None:
            for _ in range(4):
                ws.send(fill * size)

        finished.extend(outcome_of(lambda fill=fill: sender(fill)) for fill in (b"a", b"b"))
        ws.wait_closed(STEP)

    with serving(server):
        sock = slow_reader(server.port)
        server_ws = only_connection(server)
        wait_until(lambda: server_ws._transport.writer)
        time.sleep(0.1)  # both senders are over the limit by now: one flushes, one waits
        frames = [read_frame(sock) for _ in range(8)]
        assert sorted(payload for _, payload in frames) == [b"a" * size] * 4 + [b"b" * size] * 4
        assert [finished_one.result(STEP) for finished_one in finished] == [None, None]
        sock.close()


@bounded(30)
def test_an_abort_wakes_a_sender_flushing_and_a_reader_reading_directly() -> None:
    outcomes: dict[str, Future[object]] = {}
    server = Server(Options(write_limit=65536))

    @server.get("/ws")
    def blocked(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        # Readable only once the I/O thread has started the connection: the next recv() reads directly.
        assert ws.recv(timeout=STEP) == "go"
        outcomes["recv"] = outcome_of(ws.recv)
        outcomes["send"] = outcome_of(lambda: [ws.send(b"z" * (1 << 20)) for _ in range(8)])
        ws.wait_closed(STEP)

    with serving(server):
        sock = slow_reader(server.port)  # it never reads: the sender waits for room
        sock.sendall(masked(0x81, b"go"))
        server_ws = only_connection(server)
        transport = server_ws._transport
        wait_until(lambda: transport.writer and transport.direct)
        server_ws.abort()
        assert outcomes["recv"].result(STEP) is None
        assert isinstance(outcomes["send"].result(STEP), ConnectionClosed)
        wait_until(lambda: not server.connections)
        sock.close()


@bounded(30)
def test_a_close_from_another_thread_ends_a_send_flushing_to_a_peer_that_never_reads() -> None:
    outcome: list[Future[object]] = []
    server = Server(Options(write_limit=65536, close_timeout=60))  # longer than the test may wait

    @server.get("/ws")
    def flood(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        outcome.append(outcome_of(lambda: [ws.send(b"z" * (1 << 20)) for _ in range(8)]))
        ws.wait_closed(STEP)

    with serving(server):
        sock = slow_reader(server.port)
        server_ws = only_connection(server)
        wait_until(lambda: server_ws._transport.writer)
        server_ws.start_close(1001)
        assert isinstance(outcome[0].result(STEP), ConnectionClosed)
        sock.close()


@bounded(30)
def test_ping_flood_from_a_peer_that_never_reads_is_bounded() -> None:
    flood_read = threading.Event()
    server = Server()

    @server.get("/ws")
    def echo(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        for message in ws:
            if message == "end":
                flood_read.set()
            ws.send(message)

    with serving(server):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(HANDSHAKE)
        server_ws = only_connection(server)
        # Small fixed kernel buffers on both sides, so the pongs back up in user space.
        server_ws._transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        ping = masked(0x89, b"p" * 125)
        try:
            for _ in range(200):
                sock.sendall(ping * 100)
            sock.sendall(masked(0x81, b"end"))
        except OSError:
            pass  # dropped: nothing stays buffered for it
        else:
            assert flood_read.wait(STEP)  # the server has read, and answered, every ping before it
        # Pongs stop piling up once the output is over write_limit: only the latest ping is remembered.
        assert server_ws._transport.buffered < 65536 + 262144 + 125 * 100, server_ws._transport.buffered
        sock.close()


@bounded(60)
def test_concurrent_senders_never_interleave_or_lose_frames() -> None:
    threads_count, per_thread = 8, 500
    received: list[str | bytes] = []
    done = threading.Event()
    server = Server(Options(max_message_size=1 << 20))

    @server.get("/ws")
    def sink(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        while len(received) < threads_count * per_thread:
            message = ws.recv(timeout=STEP)
            assert message is not None
            received.append(message)
        done.set()
        ws.recv(timeout=STEP)

    with serving(server) as url, connect(url) as ws:
        rng = random.Random(7)
        sizes = [rng.choice((1, 100, 126, 5000, 70000)) for _ in range(per_thread)]

        def sender(tid: int) -> None:
            for seq, size in enumerate(sizes):
                head = f"{tid}:{seq}:"
                if seq % 2:
                    ws.send(head + "t" * size)
                else:
                    ws.send((head + "b" * size).encode())

        senders = [threading.Thread(target=sender, args=(tid,)) for tid in range(threads_count)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(40)
        assert done.wait(STEP)
    expected_next = [0] * threads_count
    for message in received:
        text = message.decode() if isinstance(message, bytes) else message
        tid, seq, body = text.split(":", 2)
        t, s = int(tid), int(seq)
        assert s == expected_next[t], (t, s)
        expected_next[t] += 1
        assert isinstance(message, bytes) == (s % 2 == 0)
        assert body == ("t" if s % 2 else "b") * sizes[s]
    assert expected_next == [per_thread] * threads_count


@bounded(60)
def test_a_second_concurrent_recv_is_refused_and_the_first_still_gets_its_message(echo_url: str) -> None:
    with connect(echo_url) as ws:

        def receive(into: Future[Any]) -> None:
            try:
                into.set_result(ws.recv(timeout=STEP))
            except BaseException as exc:
                into.set_exception(exc)

        first: Future[Any] = Future()
        threading.Thread(target=receive, args=(first,), daemon=True).start()
        wait_until(lambda: ws._session.receiving)  # the other thread is waiting in recv()
        with pytest.raises(InvalidState, match="another recv\\(\\) is already waiting"):
            ws.recv(timeout=STEP)
        with pytest.raises(InvalidState, match="already waiting"):
            ws.recv_frame(timeout=STEP)
        ws.send("one")
        assert first.result(STEP) == "one"
        # Once the first one returned, the next recv() is the only one again.
        ws.send("two")
        assert ws.recv(timeout=STEP) == "two"
        # A recv() left waiting when the connection closes gets None; it does not hang.
        last: Future[Any] = Future()
        threading.Thread(target=receive, args=(last,), daemon=True).start()
        wait_until(lambda: ws._session.receiving)
        ws.close()
        assert last.result(STEP) is None


@bounded(30)
def test_a_recv_that_timed_out_lets_the_next_one_wait(echo_url: str) -> None:
    with connect(echo_url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        ws.send("after")
        assert ws.recv(timeout=STEP) == "after"


@bounded(30)
def test_without_epoll(no_epoll: None) -> None:
    """The selectors fallback (no thread-safe interest changes): echo, heartbeat, close."""
    options = Options(ping_interval=0.05, ping_timeout=1)
    answered = threading.Event()
    with serving(pong_counting_echo_server(options, 4, answered)) as url, connect(url, options=options) as ws:
        assert not ws._transport.reactor.threadsafe
        messages: list[Message] = ["no epoll", b"\x00" * 300000]
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=STEP) == message
        assert answered.wait(STEP)  # the server's heartbeat goes on, answered by an idle client
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.1)
        ws.send("still fine")
        assert ws.recv(timeout=STEP) == "still fine"
    assert ws.close_code == 1000


@bounded(30)
def test_the_heartbeat_pings_every_interval_even_when_the_timeout_is_longer() -> None:
    server = Server(Options(ping_interval=0.1, ping_timeout=5.0))

    @server.get("/ws")
    def idle(ctx: Context) -> None:
        ctx.upgrade_to_websocket().wait_closed(STEP)

    with serving(server) as url, connect(url, options=Options(ping_interval=None)) as ws:
        pings = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            frame = ws.recv_frame(timeout=STEP)
            if frame is not None and frame.opcode == Opcode.PING:
                pings += 1
        assert pings >= 6  # about ten; one per ping_timeout would be none


@bounded(30)
def test_a_heartbeat_due_while_a_thread_holds_the_lock_does_not_hold_up_the_io_thread() -> None:
    released = threading.Event()
    pinged = threading.Event()
    server = Server(Options(ping_interval=None))

    @server.get("/ws")
    def watch(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        while (frame := ws.recv_frame(timeout=STEP)) is not None:
            if frame.opcode == Opcode.PING and released.is_set():
                pinged.set()

    with serving(server) as url, connect(url, options=Options(ping_interval=0.05, ping_timeout=5.0)) as ws:
        reactor = ws._transport.reactor
        on_io_thread(reactor, lambda: None)  # after the connection's start(), queued by connect()
        with ws._lock:
            time.sleep(0.3)  # the heartbeat falls due meanwhile
            assert on_io_thread(reactor, threading.get_ident) != threading.get_ident()
        released.set()
        assert pinged.wait(STEP)  # and it goes on once the lock is free


@bounded(30)
def test_messages_that_came_with_the_upgrade_still_bound_the_queue() -> None:
    """max_queue messages in the upgrade's packet pause reading, and starting the connection keeps it paused."""
    reading = threading.Event()
    queued: list[int] = []
    server = Server(Options(max_queue=4, ping_interval=None))

    @server.get("/ws")
    def lazy(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        reading.wait(STEP)
        queued.append(len(ws._queue))
        while ws.recv(timeout=STEP) is not None:
            pass

    message = masked(0x82, b"m" * 1000)
    with serving(server), raw_connection(server.port, HANDSHAKE + message * 4) as sock:
        sock.settimeout(0.2)
        sent = 0
        try:
            for _ in range(20000):
                sock.sendall(message)
                sent += 1
        except TimeoutError:
            pass  # the server stopped reading: the behaviour under test
        reading.set()
        wait_until(lambda: queued)
        assert queued[0] <= 4 + 262144 // 1000  # max_queue plus what one read hands over
        assert sent < 20000
