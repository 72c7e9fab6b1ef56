"""The threaded transport over real loopback sockets: against itself, the asyncio transport and websockets.

Every test runs its body under ``bounded()``: a deadlock fails the test after
a while instead of hanging the suite. Blocking calls in the tests carry
timeouts of their own for the same reason.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import websockets
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from wsstack import asyncio as wsasyncio
from wsstack.errors import ConnectionClosed, HandshakeError, InvalidHandshake, InvalidState
from wsstack.frames import Opcode
from wsstack.options import Options
from wsstack.sync import Context, Server, WebSocket, broadcast, connect
from wsstack.sync import reactor as reactor_module

ROOT = Path(__file__).resolve().parents[2]
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
STEP = 10.0  # the timeout of any single blocking step

Message = str | bytes

F = TypeVar("F", bound=Callable[..., None])


def bounded(seconds: float) -> Callable[[F], F]:
    """Fail the test if its body runs longer than ``seconds`` (the body's thread is left behind)."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            outcome: list[BaseException | None] = []

            def body() -> None:
                try:
                    test(*args, **kwargs)
                except BaseException as exc:
                    outcome.append(exc)
                else:
                    outcome.append(None)

            thread = threading.Thread(target=body, daemon=True, name=f"test-{test.__name__}")
            thread.start()
            thread.join(seconds)
            if not outcome:
                pytest.fail(f"{test.__name__} still running after {seconds} s")
            if outcome[0] is not None:
                raise outcome[0]

        return wrapper  # type: ignore[return-value]

    return decorate


def echo_server(options: Options | None = None, **kwargs: Any) -> Server:
    server = Server(options, **kwargs)

    @server.get("/ws")
    def echo(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.response.status = 400
            ctx.response.body = "upgrade required"
            return
        ws = ctx.upgrade_to_websocket()
        for message in ws:
            ws.send(message)

    return server


@contextmanager
def serving(server: Server, host: str = "127.0.0.1") -> Iterator[str]:
    """Listen on a free port; yield the ws:// URL of /ws; shut down."""
    server.listen(0, host)
    try:
        yield f"ws://{host}:{server.port}/ws"
    finally:
        server.shutdown(timeout=5)


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def raw_connection(port: int, request: bytes = HANDSHAKE) -> socket.socket:
    """A plain socket that sent ``request`` and, for an upgrade, read the 101 head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
    sock.sendall(request)
    if request is HANDSHAKE:
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def raw_http(port: int, request: bytes) -> bytes:
    with raw_connection(port, request) as sock:
        return read_all(sock)


def masked(first_byte: int, payload: bytes, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    assert len(payload) < 126
    return bytes((first_byte, 0x80 | len(payload))) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame: (first byte, payload)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    first, length = exactly(2)
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return first, exactly(length)


def wait_until(condition: Callable[[], bool], timeout: float = STEP) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition still false")
        time.sleep(0.01)


def only_connection(server: Server) -> WebSocket:
    wait_until(lambda: len(server.connections) == 1)
    (ws,) = list(server.connections)
    return ws


# -- echo, every direction of interoperation


@bounded(30)
def test_echo_with_own_client() -> None:
    options = Options(max_message_size=4 << 20)
    with serving(echo_server(options)) as url, connect(url, options=options) as ws:
        messages: list[Message] = ["hello", "", "é€𝄞", b"", b"\x00\xff" * 10, os.urandom(3 << 20), "x" * 70000]
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=STEP) == message
        ws.send_binary(bytearray(b"array"))
        assert ws.recv(timeout=STEP) == b"array"
    assert ws.close_code == 1000 and not ws.is_open
    assert ws.recv() is None


@bounded(30)
def test_websockets_sync_client_against_our_server() -> None:
    with serving(echo_server()) as url, ws_connect(url, compression=None) as client:
        messages: list[Message] = ["text", b"binary", "x" * 70000, b"y" * 200000]
        for message in messages:
            client.send(message)
            assert client.recv(timeout=STEP) == message
        client.ping(b"from websockets").wait(STEP)


@bounded(30)
def test_websockets_sync_client_with_compression() -> None:
    with serving(echo_server(Options(enable_compression=True))) as url, ws_connect(url) as client:
        text = "compressible " * 1000
        client.send(text)
        assert client.recv(timeout=STEP) == text
        assert client.response is not None
        assert "permessage-deflate" in (client.response.headers.get("Sec-WebSocket-Extensions") or "")


@bounded(30)
def test_our_client_against_websockets_sync_server() -> None:
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with ws_serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            messages: list[Message] = ["text", b"binary", b"y" * 200000]
            for message in messages:
                ws.send(message)
                assert ws.recv(timeout=STEP) == message
            assert 0 <= ws.ping(b"abc").result(STEP) < 5
        assert ws.close_code == 1000
        with connect(f"ws://127.0.0.1:{port}/", options=Options(enable_compression=True)) as ws:
            assert ws.extensions == ["permessage-deflate"]
            ws.send("squeeze " * 500)
            assert ws.recv(timeout=STEP) == "squeeze " * 500
        server.shutdown()
        thread.join(STEP)


@contextmanager
def asyncio_echo_server() -> Iterator[str]:
    """Our asyncio server on a loop of its own in another thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = wsasyncio.Server()

    @server.get("/ws")
    async def echo(ctx: Any) -> None:
        ws = await ctx.upgrade_to_websocket()
        async for message in ws:
            await ws.send(message)

    asyncio.run_coroutine_threadsafe(server.listen(0), loop).result(STEP)
    try:
        yield f"ws://127.0.0.1:{server.port}/ws"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(timeout=2), loop).result(STEP)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STEP)
        loop.close()


@bounded(30)
def test_our_sync_client_against_our_asyncio_server() -> None:
    with asyncio_echo_server() as url, connect(url) as ws:
        messages: list[Message] = ["sync to asyncio", b"\x00" * 100000]
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=STEP) == message
        assert ws.ping().result(STEP) >= 0


@bounded(30)
def test_our_asyncio_client_against_our_sync_server() -> None:
    async def main(url: str) -> None:
        async with wsasyncio.connect(url) as ws:
            messages: list[Message] = ["asyncio to sync", b"\x01" * 100000]
            for message in messages:
                await ws.send(message)
                assert await ws.recv() == message
            assert await ws.ping() >= 0
        assert ws.close_code == 1000

    with serving(echo_server()) as url:
        asyncio.run(asyncio.wait_for(main(url), STEP))


@bounded(30)
def test_tls_both_ways() -> None:
    import trustme

    authority = trustme.CA()
    cert = authority.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    with serving(echo_server(ssl=server_context), "localhost") as url:
        url = url.replace("ws://", "wss://")
        with connect(url, ssl=client_context) as ws:
            messages: list[Message] = ["secret", os.urandom(300000)]
            for message in messages:
                ws.send(message)
                assert ws.recv(timeout=STEP) == message
        with ws_connect(url, ssl=client_context) as client:
            client.send(b"bytes over tls")
            assert client.recv(timeout=STEP) == b"bytes over tls"
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(url)  # the system trust store does not know this CA


@bounded(30)
def test_subprotocol_and_headers() -> None:
    server = Server()
    seen: dict[str, Any] = {}

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        seen["offered"] = ctx.offered_subprotocols()
        seen["token"] = ctx.header("X-Token")
        ws = ctx.upgrade_to_websocket(subprotocol="chat.v2")
        ws.send(ws.subprotocol or "")
        ws.recv(timeout=STEP)

    with serving(server) as url, connect(url, subprotocols=["chat.v1", "chat.v2"], headers=[("X-Token", "t")]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.recv(timeout=STEP) == "chat.v2"
    assert seen == {"offered": ["chat.v1", "chat.v2"], "token": "t"}


# -- the connection API


@bounded(30)
def test_recv_frame_sees_control_frames() -> None:
    frames: list[Any] = []
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        while (frame := ws.recv_frame(timeout=STEP)) is not None:
            frames.append(frame)
            if frame.opcode == Opcode.CLOSE:
                break

    with serving(server) as url:
        with ws_connect(url) as client:
            client.send(["frag", "mented"])
            client.ping(b"p")
            client.send(b"bin")
        wait_until(lambda: len(frames) == 6)
    assert [(f.opcode, f.payload, f.fin) for f in frames] == [
        (Opcode.TEXT, b"frag", False),
        (Opcode.CONTINUATION, b"mented", False),
        (Opcode.CONTINUATION, b"", True),  # websockets ends a fragmented send with an empty frame
        (Opcode.PING, b"p", True),
        (Opcode.BINARY, b"bin", True),
        (Opcode.CLOSE, b"\x03\xe8", True),
    ]


@bounded(30)
def test_recv_timeout_then_more_messages() -> None:
    with serving(echo_server()) as url, connect(url) as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        assert 0.15 < time.monotonic() - started < 2
        ws.send("after the timeout")
        assert ws.recv(timeout=STEP) == "after the timeout"


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
        assert ws.close_code == 4001  # the reason is the server's answer's: the core echoes the code only


@bounded(30)
def test_close_from_websockets_peer_with_code() -> None:
    seen: Future[tuple[int | None, str]] = Future()
    server = Server()

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        assert ws.recv(timeout=STEP) is None
        seen.set_result((ws.close_code, ws.close_reason))

    with serving(server) as url:
        with ws_connect(url) as client:
            client.close(4002, "bye from websockets")
        assert seen.result(STEP) == (4002, "bye from websockets")


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
def test_server_close_times_out_when_the_client_never_answers() -> None:
    outcome: Future[tuple[float, int | None]] = Future()
    server = Server(Options(close_timeout=0.3))

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
        assert 0.25 < elapsed < 2 and code == 1006  # the closing handshake did not complete


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
def test_peer_protocol_error_is_failed_with_1002() -> None:
    with serving(echo_server()) as url:
        port = port_of(url)
        with raw_connection(port) as sock:
            sock.sendall(b"\x81\x05hello")  # unmasked client frame
            reason = b"client frame is not masked"
            assert read_all(sock) == bytes((0x88, 2 + len(reason))) + b"\x03\xea" + reason


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
    release = threading.Event()
    second: Future[Any] = Future()
    server = Server()

    @server.get("/ws")
    def reads_once(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        assert ws.recv(timeout=STEP) == "one"
        release.wait(STEP)  # busy elsewhere from now on
        second.set_result(ws.recv(timeout=STEP))

    with serving(server) as url, connect(url) as ws:
        ws.send("one")
        time.sleep(0.05)
        for _ in range(3):
            assert 0 <= ws.ping().result(STEP) < 1
        ws.send("two")
        release.set()
        assert second.result(STEP) == "two"


@bounded(30)
def test_ping_right_after_recv_is_answered_at_once() -> None:
    with serving(echo_server()) as url, connect(url) as ws:
        for _ in range(20):
            ws.send("x")
            assert ws.recv(timeout=STEP) == "x"
            # The client thread read directly; its ping must not wait for a linger tick.
            assert ws.ping().result(STEP) < 0.04


@bounded(30)
def test_reply_to_earlier_message_precedes_the_failure_close() -> None:
    """Autobahn's strict behaviour: echo what came before a protocol error, then fail."""
    with serving(echo_server()) as url:
        port = port_of(url)
        # In the same packet as the request: a text frame, then one with RSV2 set.
        request = HANDSHAKE + masked(0x81, b"hi") + masked(0xA1, b"no")
        with raw_connection(port, request) as sock:
            data = read_all(sock)
            head, _, frames = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            assert frames[:4] == b"\x81\x02hi"
            assert frames[4] == 0x88 and frames[6:8] == (1002).to_bytes(2, "big")


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


# -- HTTP side


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
def test_invalid_upgrade_gets_its_status() -> None:
    with serving(echo_server()) as url:
        port = port_of(url)
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
        time.sleep(0.1)
        assert threading.active_count() == threads_before  # slow heads hold no thread
        for sock in socks:
            try:
                while True:
                    sock.sendall(b"X")
                    time.sleep(0.05)
            except OSError:
                pass  # reset by the server
            with sock:
                try:
                    assert read_all(sock) == b""
                except ConnectionResetError:
                    pass
        assert time.monotonic() - started < 3


@bounded(30)
def test_open_timeout_on_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{port}/", options=Options(open_timeout=0.3))
        assert time.monotonic() - started < 3


# -- heartbeat, flow control, shutdown, broadcast


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


@bounded(30)
def test_heartbeat_keeps_a_live_peer() -> None:
    with serving(echo_server(Options(ping_interval=0.05, ping_timeout=0.5))) as url, connect(url) as ws:
        time.sleep(0.4)
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
        time.sleep(1.0)
        # The sender waits: at most the kernel's buffers plus one message above the limit.
        assert len(progress) < 200, len(progress)
        assert server_ws._transport.buffered <= 65536 + 65536, server_ws._transport.buffered
        sock.close()  # a reset: the blocked sender must wake up
        assert isinstance(outcome.result(STEP), ConnectionClosed)


@bounded(30)
def test_ping_flood_from_a_peer_that_never_reads_is_bounded() -> None:
    server = echo_server()
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
        except OSError:
            pass
        time.sleep(0.3)
        # Pongs stop piling up once the output is over write_limit: only the latest ping is remembered.
        assert server_ws._transport.buffered < 65536 + 262144 + 125 * 100, server_ws._transport.buffered
        sock.close()


@bounded(30)
def test_broadcast_shares_one_compressed_frame_without_context_takeover() -> None:
    server = Server(Options(enable_compression=True, server_no_context_takeover=True))
    members: list[WebSocket] = []

    @server.get("/ws")
    def room(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        members.append(ws)
        ws.recv(timeout=STEP)

    with serving(server) as url:
        clients = [connect(url, options=Options(enable_compression=True)) for _ in range(3)]
        wait_until(lambda: len(members) == 3)
        extension = members[0].core.extensions[0]
        calls = 0
        original = type(extension).encode

        def counting(self: Any, data: bytes) -> Any:
            nonlocal calls
            calls += 1
            return original(self, data)

        type(extension).encode = counting  # type: ignore[method-assign, assignment]
        try:
            text = '{"event": "tick", "values": [1, 2, 3]}' * 20
            assert broadcast(members, text) == 3
        finally:
            type(extension).encode = original  # type: ignore[method-assign]
        assert calls == 1
        for ws in clients:
            assert ws.extensions == ["permessage-deflate"]
            assert ws.recv(timeout=STEP) == text
            ws.close()


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

    @server.get("/ws")
    def stubborn(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        time.sleep(1.5)  # not reading: the close handshake cannot finish here
        ws.recv()

    server.listen(0)
    ws = connect(f"ws://127.0.0.1:{server.port}/ws", options=Options(auto_pong=False))
    started = time.monotonic()
    server.shutdown(timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert ws.recv(timeout=STEP) is None
    assert ws.close_code == 1001


@bounded(30)
def test_serve_forever_until_shutdown_and_context_manager() -> None:
    with echo_server() as server:
        server.listen(0)
        threading.Timer(0.2, server.shutdown).start()
        server.serve_forever()
    with pytest.raises(InvalidState):
        Server().serve_forever()  # not listening


@bounded(30)
def test_broadcast_encodes_once_and_reaches_everyone() -> None:
    server = Server()
    members: set[WebSocket] = set()
    lock = threading.Lock()

    @server.get("/ws")
    def room(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        with lock:
            members.add(ws)
        for message in ws:
            with lock:
                broadcast(members, message)
        with lock:
            members.discard(ws)

    with serving(server) as url:
        clients = [connect(url) for _ in range(3)]
        wait_until(lambda: len(members) == 3)
        clients[0].send("to all")
        for ws in clients:
            assert ws.recv(timeout=STEP) == "to all"
        clients[1].send(b"\x01\x02")
        for ws in clients:
            assert ws.recv(timeout=STEP) == b"\x01\x02"
        # Client-side connections mask their own copy.
        assert broadcast(clients, "from the clients") == 3
        for ws in clients:
            for _ in range(3):
                assert ws.recv(timeout=STEP) == "from the clients"
        for ws in clients:
            ws.close()


@bounded(30)
def test_broadcast_skips_closed_and_slow_connections() -> None:
    server = echo_server()
    with serving(server) as url:
        a, b = connect(url), connect(url)
        wait_until(lambda: len(server.connections) == 2)
        conns = list(server.connections)
        slow = conns[0]
        slow._transport._out_size = slow._write_limit + 1  # as if its peer had stopped reading
        try:
            assert broadcast(conns, "x") == 1
        finally:
            slow._transport._out_size = 0
        b.close()
        wait_until(lambda: sum(ws.is_open for ws in conns) == 1)
        assert broadcast(conns, "y") == 1
        a.close()


# -- many threads


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
def test_concurrent_receivers_share_the_messages() -> None:
    with serving(echo_server()) as url, connect(url) as ws:
        got: list[str] = []
        lock = threading.Lock()

        def receiver() -> None:
            while (message := ws.recv(timeout=STEP)) is not None:
                with lock:
                    got.append(message)  # type: ignore[arg-type]
                    if len(got) == 1000:
                        return

        threads = [threading.Thread(target=receiver, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        for i in range(1000):
            ws.send(str(i))
        wait_until(lambda: len(got) == 1000)
        assert sorted(got, key=int) == [str(i) for i in range(1000)]


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
def test_without_epoll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The selectors fallback (no thread-safe interest changes): echo, heartbeat, close."""
    monkeypatch.setattr(reactor_module, "USE_EPOLL", False)
    monkeypatch.setattr("wsstack.sync.client._reactor", None)
    try:
        options = Options(ping_interval=0.05, ping_timeout=1)
        with serving(echo_server(options)) as url, connect(url, options=options) as ws:
            assert not ws._transport.reactor.threadsafe
            messages: list[Message] = ["no epoll", b"\x00" * 300000]
            for message in messages:
                ws.send(message)
                assert ws.recv(timeout=STEP) == message
            time.sleep(0.2)
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.1)
            ws.send("still fine")
            assert ws.recv(timeout=STEP) == "still fine"
        assert ws.close_code == 1000
    finally:
        import wsstack.sync.client as client_module

        if client_module._reactor is not None:
            client_module._reactor.stop(STEP)
        client_module._reactor = None


# -- examples and the command line


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"wsstack_example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def script_env() -> dict[str, str]:
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), "PYTHONIOENCODING": "utf-8"}


@bounded(30)
def test_sync_echo_example(capsys: pytest.CaptureFixture[str]) -> None:
    server = load_example("sync_echo_server").build_server()
    with serving(server) as url:
        with connect(url) as ws:
            ws.send("hello")
            assert ws.recv(timeout=STEP) == "hello"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=STEP) == b"\x00\x01"
        assert raw_http(server.port, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 400"
        )
    out = capsys.readouterr().out
    assert "WebSocket client connected" in out and "Received: 'hello'" in out
    assert "WebSocket client disconnected" in out


@bounded(30)
def test_sync_chat_room_example() -> None:
    server = load_example("sync_chat_room").build_server()
    with serving(server) as url:
        alice = connect(f"{url}?name=alice")
        assert alice.recv(timeout=STEP) == "alice joined"
        bob = connect(f"{url}?name=bob")
        assert bob.recv(timeout=STEP) == "bob joined"
        assert alice.recv(timeout=STEP) == "bob joined"
        alice.send("hi bob")
        assert bob.recv(timeout=STEP) == "alice: hi bob"
        assert alice.recv(timeout=STEP) == "alice: hi bob"
        bob.close()
        assert alice.recv(timeout=STEP) == "bob left"
        with ws_connect(f"{url}?name=carol") as carol:
            assert alice.recv(timeout=STEP) == "carol joined"
            carol.socket.shutdown(socket.SHUT_RDWR)  # no closing handshake: a pulled cable
            assert alice.recv(timeout=STEP) == "carol left"
        alice.send("still here")
        assert alice.recv(timeout=STEP) == "alice: still here"
        alice.close()


def connect_when_up(url: str, deadline: float) -> WebSocket:
    while True:
        try:
            return connect(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("name", ["sync_echo_server", "sync_chat_room"])
@bounded(40)
def test_sync_example_runs_as_a_script_until_ctrl_c(name: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=script_env(),
    )
    try:
        ws = connect_when_up(f"ws://127.0.0.1:{port}/ws?name=script", time.monotonic() + 10)
        assert ws.ping().result(STEP) >= 0
        ws.send("hi")
        assert ws.recv(timeout=STEP) in ("hi", "script joined")
        ws.close()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=STEP)
        assert proc.returncode == 0, output.decode(errors="replace")
        assert f"127.0.0.1:{port}".encode() in output
        assert b"Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@bounded(40)
def test_cli_echo_sync_round_trip(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsstack", "echo", "--sync", "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=script_env(),
        )
    try:
        deadline = time.monotonic() + 15
        while not (match := re.search(rb"listening on \S+:(\d+)", log_path.read_bytes())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        port = int(match.group(1))
        big = os.urandom(4 << 20)
        with connect(f"ws://127.0.0.1:{port}/any/path", options=Options(max_message_size=8 << 20)) as ws:
            ws.send("text stays text")
            assert ws.recv(timeout=STEP) == "text stays text"
            ws.send(big)
            assert ws.recv(timeout=STEP) == big
        with ws_connect(f"ws://127.0.0.1:{port}/") as client:
            client.send(["ab"] * 5000)  # more fragments than the default limit
            assert client.recv(timeout=STEP) == "ab" * 5000
        assert raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 426")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(STEP) == 0, log_path.read_text()
        assert "Traceback" not in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_seed_browser_client_against_the_sync_echo_example(tmp_path: Path) -> None:
    """examples/browser_client.html in headless Chromium says hello to examples/sync_echo_server.py.

    Chromium is driven as in test_browser.py (whose helpers this borrows);
    without it the test skips, or fails when CI is set.
    """
    from test_browser import TIMEOUT, chromium, find_chromium

    binary = find_chromium()
    server = load_example("sync_echo_server").build_server()

    async def scenario(port: int) -> None:
        async with chromium(binary, tmp_path) as devtools:
            page_url = (ROOT / "examples" / "browser_client.html").as_uri() + f"?url=ws://127.0.0.1:{port}/ws"
            page = await devtools.open(page_url)
            await page.wait_for("document.getElementById('log').textContent.includes('Received: Hello, Server!')")
            assert (await page.evaluate("document.getElementById('log').textContent")).startswith("Connected\n")
            # The browser offered permessage-deflate; the example's default options decline it.
            (browser_side,) = server.connections
            assert browser_side.extensions == []

    with serving(server) as url:
        asyncio.run(asyncio.wait_for(scenario(port_of(url)), TIMEOUT))
