"""``wsstack.sync.Server``: routes, the plain HTTP cycle and keep-alive, refusals, many clients, shutdown."""

from __future__ import annotations

import logging
import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from sync_helpers import (
    HANDSHAKE,
    STEP,
    echo_server,
    on_io_thread,
    port_of,
    raw_connection,
    raw_http,
    read_all,
    serving,
)
from waiting import bounded, wait_until
from wsstack.errors import HandshakeError, InvalidHandshake, InvalidState
from wsstack.options import Options
from wsstack.sync import Context, Server, WebSocket, connect
from wsstack.sync.reactor import IN, Reactor


@bounded(30)
def test_handler_exception_closes_with_1011() -> None:
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ctx.upgrade_to_websocket()
        raise RuntimeError("boom")

    with serving(server) as url, ws_connect(url) as client:
        with pytest.raises(websockets.ConnectionClosedError):
            client.recv(timeout=STEP)
        assert client.close_code == 1011


@bounded(30)
def test_a_handler_ended_by_connection_closed_is_logged_at_debug_and_its_finally_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaned_up = threading.Event()
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        try:
            for message in ws:
                ws.send(message)
            ws.send("after the loop")  # the peer has closed: ConnectionClosed ends the handler
        finally:
            cleaned_up.set()

    with caplog.at_level(logging.DEBUG, logger="wsstack"), serving(server) as url:
        with ws_connect(url) as client:
            client.close(4002, "done")
        assert cleaned_up.wait(STEP)
        wait_until(lambda: any("closed under the handler" in r.getMessage() for r in caplog.records))
    (record,) = [r for r in caplog.records if "closed under the handler" in r.getMessage()]
    assert record.levelno == logging.DEBUG and "4002" in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@bounded(30)
def test_plain_http_routes_404_405_and_keep_alive() -> None:
    server = echo_server()

    @server.get("/hello")
    def hello(ctx: Context) -> None:
        ctx.response.body = "hi " + ctx.query_params.get("name", ["?"])[0]

    with serving(server):
        port = server.port
        two = (
            b"GET /hello?name=a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /hello?name=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = raw_http(port, two)
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"hi b") and b"hi a" in data
        assert raw_http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 404")
        refused = raw_http(port, b"POST /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 405") and b"Allow: GET" in refused
        plain = raw_http(port, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 400") and plain.endswith(b"upgrade required")
        # Keep-alive, one request after the other on the same connection.
        with raw_connection(port, b"GET /hello?name=c HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
            first = b""
            while not first.endswith(b"hi c"):
                first += sock.recv(4096)
            sock.sendall(b"GET /hello?name=d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_all(sock).endswith(b"hi d")


@bounded(30)
def test_handler_exception_in_plain_http_is_500() -> None:
    server = Server()

    @server.get("/boom")
    def boom(ctx: Context) -> None:
        raise RuntimeError("boom")

    with serving(server):
        assert raw_http(server.port, b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 500"
        )


@bounded(30)
def test_invalid_upgrade_gets_its_status(echo_url: str) -> None:
    port = port_of(echo_url)
    data = raw_http(port, HANDSHAKE.replace(b"Version: 13", b"Version: 8"))
    assert data.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in data


@bounded(30)
def test_max_connections_answers_503() -> None:
    with serving(echo_server(max_connections=2)) as url:
        first, second = connect(url), connect(url)
        with pytest.raises(InvalidHandshake) as info:
            connect(url)
        assert info.value.status == 503
        with pytest.raises(websockets.InvalidStatus):
            ws_connect(url)
        first.close()
        third = connect(url)
        third.send("ok")
        assert third.recv(timeout=STEP) == "ok"
        second.close()
        third.close()


@bounded(30)
def test_max_connections_is_checked_again_at_upgrade() -> None:
    """Handlers racing past the early check still meet the limit when they upgrade."""
    entered = threading.Barrier(3, timeout=STEP)
    refused: list[int] = []
    server = Server(max_connections=1)

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        entered.wait()
        try:
            ws = ctx.upgrade_to_websocket()
        except HandshakeError as exc:
            refused.append(exc.status)
            raise
        ws.recv(timeout=STEP)

    with serving(server) as url:
        results: list[Any] = []

        def attempt() -> None:
            try:
                results.append(connect(url))
            except InvalidHandshake as exc:
                results.append(exc.status)

        threads = [threading.Thread(target=attempt) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(STEP)
        wait_until(lambda: len(refused) == 2)  # the handler notes it after answering
        assert sorted(r for r in results if isinstance(r, int)) == [503, 503] == refused
        for ws in results:
            if isinstance(ws, WebSocket):
                ws.close()


@pytest.mark.parametrize("port", [99999, 65536, -5])
def test_listen_refuses_a_port_out_of_range(port: int) -> None:
    """A ValueError as in wsstack.asyncio, where the socket module raised OverflowError."""
    with pytest.raises(ValueError, match=f"port must be from 0 to 65535, not {port}"):
        Server().listen(port)


def test_listen_refuses_a_port_that_is_not_an_int() -> None:
    with pytest.raises(TypeError, match="port must be an int, not str"):
        Server().listen("8080")  # type: ignore[arg-type]


@bounded(30)
def test_past_max_connections_the_handler_does_not_run() -> None:
    """The 503 goes out before routing to a handler: no handler work for a connection that cannot be served."""
    entered: list[str] = []
    server = Server(max_connections=1)

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        entered.append(ctx.path)
        ctx.upgrade_to_websocket().recv(timeout=STEP)

    with serving(server) as url, connect(url):
        with pytest.raises(InvalidHandshake) as info:
            connect(url)
        assert info.value.status == 503
        assert entered == ["/ws"]


def route_options_server() -> Server:
    """A server with a small message limit and a fast heartbeat, and two routes that only turn compression on."""
    server = Server(Options(max_message_size=50, ping_interval=0.05, ping_timeout=0.2))

    def echo(ws: WebSocket) -> None:
        for message in ws:
            ws.send(message)

    @server.get("/positional")
    def positional(ctx: Context) -> None:
        echo(ctx.upgrade_to_websocket(Options(enable_compression=True)))

    @server.get("/keyword")
    def keyword(ctx: Context) -> None:
        echo(ctx.upgrade_to_websocket(enable_compression=True))

    return server


@bounded(30)
@pytest.mark.parametrize("path", ["/positional", "/keyword"])
def test_upgrade_options_override_only_what_they_set(path: str) -> None:
    """``upgrade_to_websocket(Options(enable_compression=True))`` keeps the server's limit and heartbeat.

    It used to replace them with the defaults: 10,000-byte messages accepted, pings every 20 s.
    """
    server = route_options_server()
    with serving(server):
        url = f"ws://127.0.0.1:{server.port}{path}"
        with connect(url, options=Options(enable_compression=True)) as ws:
            assert ws.extensions == ["permessage-deflate"]
            ws.send("x" * 50)
            assert ws.recv(timeout=STEP) == "x" * 50
            ws.send("x" * 10_000)
            assert ws.recv(timeout=STEP) is None
            assert ws.close_code == 1009
        # The server's 0.05 s heartbeat still runs: a client that never answers a ping is failed with 1011.
        with connect(url, options=Options(enable_compression=True, auto_pong=False, ping_interval=None)) as silent:
            assert silent.recv(timeout=STEP) is None
            assert silent.close_code == 1011


@bounded(30)
def test_a_subprotocol_the_client_did_not_offer_is_a_server_error(caplog: pytest.LogCaptureFixture) -> None:
    """The handler's mistake, not the client's: 500 and a log line naming it, not a 400 in silence."""
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ctx.upgrade_to_websocket(subprotocol="chat")

    with caplog.at_level("ERROR", logger="wsstack"), serving(server) as url:
        with pytest.raises(InvalidHandshake) as info:
            connect(url, subprotocols=["superchat"])
        assert info.value.status == 500
        wait_until(lambda: any("handler for GET /ws failed" in r.getMessage() for r in caplog.records))
    failures = [r for r in caplog.records if r.levelname == "ERROR" and "handler for GET /ws failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and "'chat' was not offered" in str(failures[0].exc_info[1])


@bounded(30)
def test_allowed_origins_answers_403() -> None:
    with serving(echo_server(allowed_origins=["https://good.example"])) as url:
        with pytest.raises(InvalidHandshake) as info:
            connect(url, origin="https://evil.example")
        assert info.value.status == 403
        with connect(url, origin="https://good.example") as ws:
            ws.send("fine")
            assert ws.recv(timeout=STEP) == "fine"
        with connect(url) as ws:  # no Origin: not a browser, passes
            ws.send("fine too")
            assert ws.recv(timeout=STEP) == "fine too"


@bounded(30)
def test_slowloris_handshake_times_out_without_a_thread() -> None:
    server = echo_server(Options(open_timeout=0.3))
    with serving(server):
        threads_before = threading.active_count()
        socks = [raw_connection(server.port, b"GET /ws HTTP/1.1\r\n") for _ in range(20)]
        started = time.monotonic()
        wait_until(lambda: len(server._http) == 20)  # all accepted, their heads begun
        assert threading.active_count() == threads_before  # slow heads hold no thread
        for sock in socks:
            try:
                while True:
                    sock.sendall(b"X")
                    time.sleep(0.05)  # the attack itself: a byte now and then, never a whole head
            except OSError:
                pass  # reset by the server
            with sock:
                try:
                    assert read_all(sock) == b""
                except ConnectionResetError:
                    pass
        assert time.monotonic() - started < 3


class _BusyIOThread:
    """A socket whose one turn keeps the I/O thread for ``seconds``, as a pass over many busy sockets does under load."""

    def __init__(self, reactor: Reactor, seconds: float, meanwhile: Callable[[], object]) -> None:
        self.reactor = reactor
        self.seconds = seconds
        self.meanwhile = meanwhile
        self.sock, self.trigger = socket.socketpair()

    def start(self) -> None:
        """Register, and be ready at once (from any thread)."""
        self.reactor.call_soon(self.reactor.register, self.sock, IN, self)
        self.trigger.send(b"!")

    def read_ready(self) -> None:
        self.reactor.unregister(self.sock)
        self.meanwhile()
        time.sleep(self.seconds)
        self.sock.close()
        self.trigger.close()

    def write_ready(self) -> None:
        pass

    def abort(self) -> None:
        pass


@bounded(30)
def test_a_request_that_arrived_in_time_is_answered_though_the_io_thread_was_busy() -> None:
    """The open timeout runs out while the I/O thread is busy elsewhere, with the whole request in the kernel.

    Seen under load (issue 15: 1,000 clients echoing, a new client closed
    with no answer): the timer ran after a long pass over ready sockets and
    judged a request that had arrived during it, unread.
    """
    server = echo_server(Options(open_timeout=0.3))
    with serving(server), socket.create_connection(("127.0.0.1", server.port), timeout=STEP) as sock:
        wait_until(lambda: len(server._http) == 1)  # accepted: its open timer runs
        # The request arrives while the I/O thread is busy for twice the open timeout.
        _BusyIOThread(server._reactor, 0.6, lambda: sock.sendall(HANDSHAKE)).start()
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head


@bounded(30)
def test_the_open_timer_reads_a_request_no_poll_has_reported_yet() -> None:
    """One poll reports at most 1,023 ready sockets (CPython's epoll): with more, a timer can run first.

    The timer's callback is run by hand here, on the I/O thread, with the
    request in the kernel and unread, as it is when its socket was left
    out of the poll that found the timer due.
    """
    server = echo_server()
    with serving(server), socket.create_connection(("127.0.0.1", server.port), timeout=STEP) as sock:
        wait_until(lambda: len(server._http) == 1)
        (http,) = server._http

        def time_out_with_the_request_unread() -> bool:
            assert http.timer is not None
            http.timer.cancel()
            sock.sendall(HANDSHAKE)
            assert select.select([http.transport.sock], [], [], STEP)[0]  # arrived, not read
            http._timed_out()
            return http.busy

        assert on_io_thread(server._reactor, time_out_with_the_request_unread)
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head


@bounded(60)
def test_many_concurrent_clients_echo_intact() -> None:
    """120 clients on 120 threads each echo 200 messages of assorted sizes.

    With 200 clients (400 threads in one process, client and server) a CI
    run on a machine loaded by other work timed out on single echoes after
    10 s: the threads' turns at the GIL, not the server. 120 still keeps
    the I/O thread busy with more sockets than handler threads can drain.
    """
    clients, messages = 120, 200
    server = echo_server()
    server.listen(0, backlog=1024)
    url = f"ws://127.0.0.1:{server.port}/ws"
    blob = os.urandom(70000)
    # Each failure with the step it happened at: a timeout alone does not say which wait ran out.
    failures: list[tuple[int, str, float, BaseException]] = []
    finished: list[int] = []
    started = time.monotonic()

    def client(n: int) -> None:
        rng = random.Random(n)
        step = "opening handshake"
        try:
            # Client and server threads share one GIL: under load a handshake waits its turn
            # longer than the default 10 s (seen at 12.9 s). What this test checks is the echoes.
            with connect(url, options=Options(open_timeout=60)) as ws:
                for i in range(messages):
                    size = rng.choice((0, 1, 125, 126, 1000, 65536, rng.randrange(70000)))
                    message: str | bytes = blob[:size] if i % 2 else "é" * (size // 8)
                    step = f"message {i} ({size} bytes)"
                    ws.send(message)
                    assert ws.recv(timeout=STEP) == message
                step = "closing handshake"
            finished.append(n)
        except BaseException as exc:
            failures.append((n, step, round(time.monotonic() - started, 1), exc))

    try:
        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(50)
        assert not failures, failures[:3]
        assert sorted(finished) == list(range(clients))
    finally:
        server.shutdown(timeout=5)


@bounded(30)
def test_graceful_shutdown_closes_clients_with_1001() -> None:
    server = echo_server()
    server.listen(0)
    url = f"ws://127.0.0.1:{server.port}/ws"
    clients = [connect(url) for _ in range(5)]
    idle = socket.create_connection(("127.0.0.1", server.port))  # no request yet: dropped
    started = time.monotonic()
    server.shutdown(timeout=2)
    assert time.monotonic() - started < 2
    for ws in clients:
        assert ws.recv(timeout=STEP) is None
        assert ws.close_code == 1001
    try:
        assert read_all(idle) == b""
    except ConnectionResetError:
        pass  # still in the listening socket's backlog when it closed
    with pytest.raises(OSError):
        connect(url)
    server.shutdown()  # twice is harmless


@bounded(30)
def test_shutdown_aborts_handlers_that_ignore_it() -> None:
    server = Server()

    release = threading.Event()

    @server.get("/ws")
    def stubborn(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        release.wait(STEP)  # not reading: the close handshake cannot finish here
        ws.recv()

    server.listen(0)
    try:
        ws = connect(f"ws://127.0.0.1:{server.port}/ws", options=Options(auto_pong=False))
        started = time.monotonic()
        server.shutdown(timeout=0.5)
        assert time.monotonic() - started < 1.5
        assert ws.recv(timeout=STEP) is None
        assert ws.close_code == 1001
    finally:
        release.set()


@bounded(30)
def test_serve_forever_until_shutdown_and_context_manager() -> None:
    with echo_server() as server:
        server.listen(0)
        # serve_forever() gives no sign that it waits: shut down from another thread after a while.
        threading.Timer(0.2, server.shutdown).start()
        server.serve_forever()
    with pytest.raises(InvalidState):
        Server().serve_forever()  # not listening


@bounded(30)
@pytest.mark.parametrize("handler_is", ["busy", "in recv"])
def test_shutdown_drops_connections_whose_peer_never_answers_the_close(handler_is: str) -> None:
    """At the deadline the TCP connection goes, whether the handler reads its socket directly or not."""
    server = Server(Options(ping_interval=None, close_timeout=30))
    release = threading.Event()

    @server.get("/ws")
    def stubborn(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        if handler_is == "busy":
            release.wait(STEP)
        else:
            ws.recv()

    server.listen(0)
    try:
        with raw_connection(server.port) as sock:
            wait_until(lambda: server.connections)
            started = time.monotonic()
            server.shutdown(timeout=0.5)
            sock.settimeout(STEP)
            assert read_all(sock) == b"\x88\x16\x03\xe9server shutting down"  # 1001, then the end
            assert time.monotonic() - started < 3.0
    finally:
        release.set()
