"""``wsstack.sync.Server``: routes, the plain HTTP cycle and keep-alive, refusals, many clients, shutdown."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from sync_helpers import HANDSHAKE, STEP, echo_server, port_of, raw_connection, raw_http, read_all, serving
from waiting import bounded, wait_until
from wsstack.errors import HandshakeError, InvalidHandshake, InvalidState
from wsstack.options import Options
from wsstack.sync import Context, Server, WebSocket, connect


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


@bounded(60)
def test_many_concurrent_clients_echo_intact() -> None:
    """200 clients on 200 threads each echo 200 messages of assorted sizes."""
    clients, messages = 200, 200
    server = echo_server()
    server.listen(0, backlog=1024)
    url = f"ws://127.0.0.1:{server.port}/ws"
    blob = os.urandom(70000)
    failures: list[BaseException] = []
    finished: list[int] = []

    def client(n: int) -> None:
        rng = random.Random(n)
        try:
            with connect(url) as ws:
                for i in range(messages):
                    size = rng.choice((0, 1, 125, 126, 1000, 65536, rng.randrange(70000)))
                    message: str | bytes = blob[:size] if i % 2 else "é" * (size // 8)
                    ws.send(message)
                    assert ws.recv(timeout=STEP) == message
            finished.append(n)
        except BaseException as exc:
            failures.append(exc)

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
