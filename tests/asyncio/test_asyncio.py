"""The asyncio transport over real loopback sockets, against itself and the websockets package."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Awaitable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

from waiting import wait_until_async
from wsstack.asyncio import Server, WebSocket, broadcast, connect
from wsstack.errors import ConnectionClosed, InvalidHandshake, InvalidState
from wsstack.frames import Opcode
from wsstack.options import Options

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def run(coro: Awaitable[Any], timeout: float = 60) -> Any:
    """Run ``coro`` on a fresh loop; ``timeout`` only ends a hang, it judges no speed."""
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def echo_server(options: Options | None = None, **kwargs: Any) -> Server:
    server = Server(options, **kwargs)

    @server.get("/ws")
    async def echo(ctx: Any) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.response.status = 400
            ctx.response.body = "upgrade required"
            return
        ws = await ctx.upgrade_to_websocket()
        async for message in ws:
            await ws.send(message)

    return server


async def started(server: Server) -> str:
    await server.listen(0)
    return f"ws://127.0.0.1:{server.port}/ws"


async def raw_http(port: int, request: bytes, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read() if read_until_close else await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return data


# -- echo, both directions of interoperation


def test_echo_with_own_client() -> None:
    async def main() -> None:
        server = echo_server(Options(max_message_size=4 << 20))
        url = await started(server)
        async with connect(url, options=Options(max_message_size=4 << 20)) as ws:
            for message in ["hello", "", "é€𝄞", b"", b"\x00\xff" * 10, os.urandom(3 << 20)]:
                await ws.send(message)
                assert await ws.recv() == message
        assert ws.close_code == 1000 and not ws.is_open
        await server.close()

    run(main())


def test_websockets_client_against_our_server() -> None:
    async def main() -> None:
        server = echo_server()
        url = await started(server)
        async with ws_connect(url, compression=None) as client:
            for message in ["text", b"binary", "x" * 70000]:
                await client.send(message)
                assert await client.recv() == message
        await server.close()

    run(main())


def test_our_client_against_websockets_server() -> None:
    async def main() -> None:
        async def echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message)

        async with ws_serve(echo, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                for message in ["text", b"binary", b"y" * 200000]:
                    await ws.send(message)
                    assert await ws.recv() == message
                rtt = await ws.ping(b"abc")
                assert 0 <= rtt < 5
            assert ws.close_code == 1000

    run(main())


# -- the connection API


def test_recv_frame_sees_control_frames() -> None:
    async def main() -> None:
        frames: list[Any] = []
        server = Server()

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            # Frame mode begins at the first recv_frame(); "ready" tells the client it has.
            frames.append(await ws.recv_frame())
            await ws.send("ready")
            while (frame := await ws.recv_frame()) is not None:
                frames.append(frame)
                if frame.opcode == Opcode.CLOSE:
                    break

        url = await started(server)
        async with ws_connect(url) as client:
            await client.send("start")
            assert await client.recv() == "ready"
            await client.send(["frag", "mented"])
            await client.ping(b"p")
            await client.send(b"bin")
        await server.close()
        assert [(f.opcode, f.payload, f.fin) for f in frames] == [
            (Opcode.TEXT, b"start", True),
            (Opcode.TEXT, b"frag", False),
            (Opcode.CONTINUATION, b"mented", False),
            (Opcode.CONTINUATION, b"", True),  # websockets ends a fragmented send with an empty frame
            (Opcode.PING, b"p", True),
            (Opcode.BINARY, b"bin", True),
            (Opcode.CLOSE, b"\x03\xe8", True),
        ]

    run(main())


def test_server_initiated_close_reaches_client_with_code_and_reason() -> None:
    async def main() -> None:
        server = Server()

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            await ws.close(4000, "custom")

        url = await started(server)
        ws = await connect(url)
        assert await ws.recv() is None
        assert (ws.close_code, ws.close_reason) == (4000, "custom")
        with pytest.raises(ConnectionClosed):
            await ws.send("late")
        await server.close()

    run(main())


def test_a_second_concurrent_recv_is_refused_and_the_first_still_gets_its_message() -> None:
    async def main() -> None:
        server = echo_server()
        url = await started(server)
        ws = await connect(url)
        first = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)  # one loop iteration: the first recv() is waiting
        with pytest.raises(InvalidState, match="another recv\\(\\) is already waiting"):
            await ws.recv()
        with pytest.raises(InvalidState, match="already waiting"):
            await ws.recv_frame()
        await ws.send("one")
        assert await asyncio.wait_for(first, 5) == "one"
        # Once the first one returned, the next recv() is the only one again.
        await ws.send("two")
        assert await asyncio.wait_for(ws.recv(), 5) == "two"
        # A recv() left waiting when the connection closes gets None; it does not hang.
        last = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(InvalidState):
            await ws.recv()
        await ws.close()
        assert await asyncio.wait_for(last, 5) is None
        await server.close()

    run(main())


def test_a_cancelled_recv_lets_the_next_one_wait() -> None:
    async def main() -> None:
        server = echo_server()
        url = await started(server)
        async with connect(url) as ws:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.05)
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 5) == "after"
        await server.close()

    run(main())


@pytest.mark.parametrize("then", ["recv", "recv_frame", "set_message_handler"])
def test_a_recv_cancelled_a_moment_ago_is_no_longer_a_receiver(then: str) -> None:
    """``task.cancel()`` then a ``recv()`` at once, before the cancelled task has run its way out.

    The pattern of ``asyncio.wait(..., return_when=FIRST_COMPLETED)`` and a
    cancel of the receive that lost: it used to raise ``InvalidState``.
    """

    async def main() -> None:
        server = echo_server()
        url = await started(server)
        async with connect(url) as ws:
            abandoned = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0)  # it waits
            got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            async def take_over() -> Any:
                abandoned.cancel()  # and at once, before the cancelled task has run again:
                if then == "recv":
                    return await ws.recv()
                frame = await ws.recv_frame()
                return None if frame is None else frame.payload.decode()

            if then == "set_message_handler":
                abandoned.cancel()
                ws.set_message_handler(lambda message: got.done() or got.set_result(message))
                await ws.send("after")
            else:
                receiving = asyncio.ensure_future(take_over())
                await asyncio.sleep(0)  # it waits, and the cancelled one has left
                await ws.send("after")
                got.set_result(await asyncio.wait_for(receiving, 5))
            assert await asyncio.wait_for(got, 5) == "after"
            assert abandoned.cancelled()
            if then == "recv":
                # The one that took its place is the receiver now: a third one is refused, and after it one is fine.
                second = asyncio.ensure_future(ws.recv())
                await asyncio.sleep(0)
                with pytest.raises(InvalidState):
                    await ws.recv()
                await ws.send("again")
                assert await asyncio.wait_for(second, 5) == "again"
        await server.close()

    run(main())


@pytest.mark.parametrize("value", [5, True, 10**9, {}, {"a": 1}, None], ids=repr)
def test_sending_what_is_not_a_message_raises_type_error_and_sends_nothing(value: Any) -> None:
    async def main() -> None:
        server = echo_server()
        url = await started(server)
        async with connect(url) as ws:
            for call in (ws.send, ws.send_binary):
                with pytest.raises(TypeError, match="bytes-like object, not"):
                    await call(value)
            with pytest.raises(TypeError, match=r"^send\(\) takes str or a bytes-like object, not"):
                ws.send_nowait(value)
            for control in (ws.ping, ws.pong):
                with pytest.raises(TypeError, match="takes str or a bytes-like object, not"):
                    await control(value)
            # Nothing reached the wire: the next message is the first the server saw.
            await ws.send(bytearray(b"ok"))
            assert await asyncio.wait_for(ws.recv(), 5) == b"ok"
        await server.close()

    run(main())


def test_the_peers_close_code_and_reason_are_echoed() -> None:
    async def main() -> None:
        server = echo_server()
        url = await started(server)
        async with ws_connect(url) as client:
            await client.close(4000, "bye")
        received = client.protocol.close_rcvd  # the server's answer, as websockets parsed it
        assert received is not None and (received.code, received.reason) == (4000, "bye")
        await server.close()

    run(main())


def test_recv_frame_tells_a_close_frames_code_and_reason() -> None:
    async def main() -> None:
        seen: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()
        server = Server()

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            # Frame mode begins at the first recv_frame(); "ready" tells the client it has.
            await ws.recv_frame()
            await ws.send("ready")
            while (frame := await ws.recv_frame()) is not None:
                if frame.opcode == Opcode.CLOSE:
                    seen.set_result((frame.close_code, frame.close_reason))

        url = await started(server)
        async with ws_connect(url) as client:
            await client.send("start")
            assert await client.recv() == "ready"
            await client.close(4001, "going ✓")
        assert await asyncio.wait_for(seen, 5) == (4001, "going ✓")
        await server.close()

    run(main())


def test_a_handler_ended_by_connection_closed_is_logged_at_debug_and_its_finally_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        cleaned_up = asyncio.Event()
        server = Server()

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            try:
                while (message := await ws.recv()) is not None:
                    await ws.send(message)
                await ws.send("after the loop")  # the peer has closed: ConnectionClosed ends the handler
            finally:
                cleaned_up.set()

        url = await started(server)
        async with ws_connect(url) as client:
            await client.close(4002, "done")
        await asyncio.wait_for(cleaned_up.wait(), 5)
        await server.close()

    with caplog.at_level(logging.DEBUG, logger="wsstack"):
        run(main())
    (record,) = [r for r in caplog.records if "closed under the handler" in r.getMessage()]
    assert record.levelno == logging.DEBUG and "4002" in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_handler_exception_closes_with_1011() -> None:
    async def main() -> None:
        server = Server()

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            await ctx.upgrade_to_websocket()
            raise RuntimeError("boom")

        url = await started(server)
        async with ws_connect(url) as client:
            with pytest.raises(websockets.ConnectionClosedError):
                await client.recv()
            assert client.close_code == 1011
        await server.close()

    run(main())


def test_peer_protocol_error_is_failed_with_1002() -> None:
    async def main() -> None:
        server = echo_server()
        await server.listen(0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(UPGRADE)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"\x81\x05hello")  # unmasked client frame
        data = await asyncio.wait_for(reader.read(), 5)
        reason = b"client frame is not masked"
        assert data == bytes((0x88, 2 + len(reason))) + b"\x03\xea" + reason
        writer.close()
        await server.close()

    run(main())


# -- HTTP side


def test_plain_http_routes_404_405_and_keep_alive() -> None:
    async def main() -> None:
        server = echo_server()

        @server.get("/hello")
        def hello(ctx: Any) -> None:
            ctx.response.body = "hi " + ctx.query_params.get("name", ["?"])[0]

        await server.listen(0)
        port = server.port
        two = b"GET /hello?name=a HTTP/1.1\r\nHost: x\r\n\r\nGET /hello?name=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        data = await raw_http(port, two)
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"hi b") and b"hi a" in data
        assert (await raw_http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).startswith(
            b"HTTP/1.1 404"
        )
        refused = await raw_http(port, b"POST /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 405") and b"Allow: GET" in refused
        plain = await raw_http(port, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 400") and plain.endswith(b"upgrade required")
        await server.close()

    run(main())


def test_invalid_upgrade_gets_its_status() -> None:
    async def main() -> None:
        server = echo_server()
        await server.listen(0)
        data = await raw_http(
            server.port,
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        assert data.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in data
        await server.close()

    run(main())


def test_max_connections_answers_503() -> None:
    async def main() -> None:
        server = echo_server(max_connections=2)
        url = await started(server)
        first, second = await connect(url), await connect(url)
        with pytest.raises(InvalidHandshake) as info:
            await connect(url)
        assert info.value.status == 503
        await first.close()

        async def slot_free() -> bool:
            return len(server.connections) < 2

        await wait_until_async(slot_free)
        third = await connect(url)
        await third.send("ok")
        assert await third.recv() == "ok"
        await second.close()
        await third.close()
        await server.close()

    run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("port", [99999, 65536, -5])
def test_listen_refuses_a_port_out_of_range_on_either_loop(loop: str, port: int) -> None:
    """uvloop used to bind 99999 modulo 65536 in silence; the default loop, to fail in its resolver."""
    uvloop = pytest.importorskip("uvloop") if loop == "uvloop" else None

    async def main() -> None:
        server = Server()
        with pytest.raises(ValueError, match=f"port must be from 0 to 65535, not {port}"):
            await server.listen(port)

    event_loop = asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()
    try:
        event_loop.run_until_complete(main())
    finally:
        event_loop.close()


def test_past_max_connections_the_handler_does_not_run() -> None:
    """The 503 goes out before routing to a handler: no handler work for a connection that cannot be served."""

    async def main() -> None:
        server = Server(max_connections=1)
        entered: list[str] = []

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            entered.append(ctx.path)
            ws = await ctx.upgrade_to_websocket()
            await ws.recv()

        url = await started(server)
        first = await connect(url)
        with pytest.raises(InvalidHandshake) as info:
            await connect(url)
        assert info.value.status == 503
        assert entered == ["/ws"]
        await first.close()
        await server.close()

    run(main())


def route_options_server() -> Server:
    """A server with a small message limit and a fast heartbeat, and two routes that only turn compression on."""
    server = Server(Options(max_message_size=50, ping_interval=0.05, ping_timeout=0.2))

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @server.get("/positional")
    async def positional(ctx: Any) -> None:
        await echo(await ctx.upgrade_to_websocket(Options(enable_compression=True)))

    @server.get("/keyword")
    async def keyword(ctx: Any) -> None:
        await echo(await ctx.upgrade_to_websocket(enable_compression=True))

    return server


@pytest.mark.parametrize("path", ["/positional", "/keyword"])
def test_upgrade_options_override_only_what_they_set(path: str) -> None:
    """``upgrade_to_websocket(Options(enable_compression=True))`` keeps the server's limit and heartbeat.

    It used to replace them with the defaults: 10,000-byte messages accepted, pings every 20 s.
    """

    async def main() -> None:
        server = route_options_server()
        await server.listen(0)
        url = f"ws://127.0.0.1:{server.port}{path}"
        async with connect(url, options=Options(enable_compression=True)) as ws:
            assert ws.extensions == ["permessage-deflate"]
            await ws.send("x" * 50)
            assert await ws.recv() == "x" * 50
            await ws.send("x" * 10_000)
            assert await ws.recv() is None
            assert ws.close_code == 1009
        # The server's 0.05 s heartbeat still runs: a client that never answers a ping is failed with 1011.
        silent = await connect(url, options=Options(enable_compression=True, auto_pong=False, ping_interval=None))
        assert await asyncio.wait_for(silent.recv(), 5) is None
        assert silent.close_code == 1011
        await server.close()

    run(main())


def test_a_subprotocol_the_client_did_not_offer_is_a_server_error(caplog: pytest.LogCaptureFixture) -> None:
    """The handler's mistake, not the client's: 500 and a log line naming it, not a 400 in silence."""

    async def main() -> None:
        server = Server()

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            await ctx.upgrade_to_websocket(subprotocol="chat")

        url = await started(server)
        with pytest.raises(InvalidHandshake) as info:
            await connect(url, subprotocols=["superchat"])
        assert info.value.status == 500
        await server.close()

    with caplog.at_level("ERROR", logger="wsstack"):
        run(main())
    failures = [r for r in caplog.records if r.levelname == "ERROR" and "handler for GET /ws failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and "'chat' was not offered" in str(failures[0].exc_info[1])


def test_allowed_origins_answers_403() -> None:
    async def main() -> None:
        server = echo_server(allowed_origins=["https://good.example"])
        url = await started(server)
        with pytest.raises(InvalidHandshake) as info:
            await connect(url, origin="https://evil.example")
        assert info.value.status == 403
        async with connect(url, origin="https://good.example") as ws:
            await ws.send("fine")
            assert await ws.recv() == "fine"
        await server.close()

    run(main())


def test_slowloris_handshake_times_out() -> None:
    async def main() -> None:
        server = echo_server(Options(open_timeout=0.3))
        await server.listen(0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /ws HTTP/1.1\r\n")
        started_at = asyncio.get_running_loop().time()
        for _ in range(20):
            await asyncio.sleep(0.05)  # the slowloris itself: one byte every 50 ms
            if writer.is_closing() or reader.at_eof():
                break
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                break
        data = await asyncio.wait_for(reader.read(), 5)
        assert data == b""
        assert asyncio.get_running_loop().time() - started_at < 2
        writer.close()
        await server.close()

    run(main())


# -- heartbeat, flow control, shutdown, broadcast


def test_heartbeat_detects_a_silent_peer_and_closes_1011() -> None:
    async def main() -> None:
        closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        server = Server(Options(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.5))

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            await ws.recv()
            closed.set_result(ws.close_code)

        await server.listen(0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(UPGRADE)
        await reader.readuntil(b"\r\n\r\n")
        # Never answer: read the ping, then the close frame.
        data = await asyncio.wait_for(reader.read(), 5)
        assert data[0] == 0x89
        close_at = 2 + data[1]
        assert data[close_at] == 0x88
        assert data[close_at + 2 : close_at + 4] == (1011).to_bytes(2, "big")
        assert await asyncio.wait_for(closed, 5) == 1011
        writer.close()
        await server.close()

    run(main())


async def silent_peer(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that completes the opening handshake, then never reads nor answers anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UPGRADE)
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


@pytest.mark.parametrize("close_timeout", [0.3, 0])
def test_server_close_times_out_when_the_client_never_answers(close_timeout: float) -> None:
    """After ``close_timeout`` seconds; with 0, as soon as the close frame is out."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[tuple[float, int | None]] = loop.create_future()
        server = Server(Options(close_timeout=close_timeout, ping_interval=None))

        @server.get("/ws")
        async def closer(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            started = loop.time()
            await ws.close(4000, "going")
            outcome.set_result((loop.time() - started, ws.close_code))

        await server.listen(0)
        _, writer = await silent_peer(server.port)
        elapsed, code = await asyncio.wait_for(outcome, 10)
        assert close_timeout - 0.05 < elapsed < close_timeout + 1.5
        assert code == 1006  # the closing handshake did not complete
        writer.close()
        await server.close()

    run(main())


def test_closing_tcp_with_replies_unsent_is_aborted_after_close_timeout() -> None:
    """The peer's close is answered, but what is buffered for it never leaves: TCP's end is bounded too."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[float] = loop.create_future()
        queued = asyncio.Event()
        server = Server(Options(close_timeout=0.3, ping_interval=None, write_limit=65536))

        @server.get("/ws")
        async def flood(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            for _ in range(64):
                ws.send_nowait(b"z" * 65536)  # 4 MiB queued behind a peer that reads nothing
            queued.set()
            assert await ws.recv() is None
            started = loop.time()
            await ws.wait_closed()
            outcome.set_result(loop.time() - started)

        await server.listen(0)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(UPGRADE)
        await asyncio.wait_for(queued.wait(), 10)
        sock.sendall(bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]))  # a close frame, code 1000
        elapsed = await asyncio.wait_for(outcome, 10)
        assert elapsed < 0.3 + 1.5
        sock.close()
        await server.close()

    run(main())


def test_wait_closed_cancelled_leaves_other_waiters_and_nothing_behind() -> None:
    async def main() -> None:
        server = echo_server(Options(ping_interval=None))
        url = await started(server)
        ws = await connect(url)
        patient = asyncio.ensure_future(ws.wait_closed())
        for _ in range(5):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 0.01)
        assert ws._lost_waiters is not None and len(ws._lost_waiters) == 1  # only the patient one
        assert not patient.done()
        await ws.close()
        await asyncio.wait_for(patient, 5)
        await ws.wait_closed()  # once closed, at once
        await server.close()

    run(main())


@pytest.mark.parametrize("ending", ["close", "heartbeat"])
def test_a_ping_to_a_silent_peer_fails_with_connection_closed_when_the_connection_ends(ending: str) -> None:
    async def main() -> None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        heartbeat = {"ping_interval": 0.1, "ping_timeout": 0.2} if ending == "heartbeat" else {"ping_interval": None}
        server = Server(Options(close_timeout=0.3, **heartbeat))  # type: ignore[arg-type]

        @server.get("/ws")
        async def handler(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            ping = ws.ping(b"are you there")
            if ending == "close":
                await ws.close()  # no answer: the close times out and the connection is dropped
            try:
                await asyncio.wait_for(ping, 5)
            except BaseException as exc:
                outcome.set_result(exc)
            else:
                outcome.set_result(None)

        await server.listen(0)
        _, writer = await silent_peer(server.port)
        error = await asyncio.wait_for(outcome, 10)
        assert isinstance(error, ConnectionClosed), error
        assert error.code == (1011 if ending == "heartbeat" else 1006)
        writer.close()
        await server.close()

    run(main())


def test_heartbeat_keeps_a_live_peer() -> None:
    async def main() -> None:
        server = echo_server(Options(ping_interval=0.05, ping_timeout=0.2))
        url = await started(server)
        async with connect(url) as ws:
            # The behaviour under test: idle for over twice ping_interval + ping_timeout,
            # long enough for an unanswered heartbeat ping to have failed the connection.
            await asyncio.sleep(0.6)
            await ws.send("still here")
            assert await ws.recv() == "still here"
        await server.close()

    run(main())


def test_slow_reader_does_not_grow_server_memory() -> None:
    async def main() -> None:
        progress: list[int] = []
        server = Server(Options(write_limit=65536))

        @server.get("/ws")
        async def flood(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            chunk = b"z" * 65536
            try:
                for i in range(2000):
                    await ws.send(chunk)
                    progress.append(i)
            except ConnectionClosed:
                pass

        await server.listen(0)
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(UPGRADE)

        async def sender_waits() -> bool:
            # flood() only ever suspends in send(), once writing is paused.
            return any(conn._session.writing_paused for conn in server.connections)

        await wait_until_async(sender_waits)
        # The kernel may still take part of the buffer; meanwhile the sender must stay within bounds.
        await asyncio.sleep(0.5)
        [ws] = list(server.connections)
        buffered = ws._transport.get_write_buffer_size()
        # The sender waits: at most the kernel's buffers plus one message above the limit.
        assert len(progress) < 200, len(progress)
        assert buffered <= 65536 + 65536 + 16, buffered
        sock.close()
        await server.close()

    run(main())


def test_fast_sender_pauses_reading() -> None:
    async def main() -> None:
        server = Server(Options(max_queue=4))
        reading = asyncio.Event()

        @server.get("/ws")
        async def lazy(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            await reading.wait()
            count = 0
            while await ws.recv() is not None:
                count += 1
                if count == 500:
                    await ws.send(str(count))

        url = await started(server)
        async with connect(url) as ws:
            for _ in range(500):
                await ws.send(b"m" * 1000)
            [server_ws] = list(server.connections)

            async def paused() -> bool:
                return server_ws._session.reading_paused

            await wait_until_async(paused)
            # Nothing signals a read that should not happen: give one the time to show.
            await asyncio.sleep(0.2)
            # Bounded by max_queue plus what one read hands over (asyncio reads at most 256 KiB).
            assert server_ws._session.reading_paused and len(server_ws._queue) <= 4 + 262144 // 1000
            reading.set()
            assert await ws.recv() == "500"
        await server.close()

    run(main())


def test_graceful_shutdown_closes_clients_with_1001() -> None:
    async def main() -> None:
        server = echo_server()
        url = await started(server)
        clients = [await connect(url) for _ in range(5)]
        await server.close(timeout=2)
        for ws in clients:
            assert await ws.recv() is None
            assert ws.close_code == 1001
        with pytest.raises(OSError):
            await connect(url)

    run(main())


def test_a_handlers_task_leaves_the_server_when_it_ends_or_is_cancelled_by_close() -> None:
    """The task removes itself (no done callback kept per connection); close() forgets those it cancels."""

    async def main() -> None:
        server = echo_server()
        stuck = asyncio.Event()

        @server.get("/stuck")
        async def never_returns(ctx: Any) -> None:
            stuck.set()
            await asyncio.Event().wait()

        async def no_tasks() -> bool:
            return not server._tasks

        url = await started(server)
        async with connect(url) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            (task,) = server._tasks
            assert task.get_coro().__qualname__ == "_HTTPProtocol._handle"
        await wait_until_async(no_tasks)
        assert task.done() and not task.cancelled()
        # A plain HTTP answer leaves no task behind either.
        assert (await raw_http(server.port, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).startswith(
            b"HTTP/1.1 400"
        )
        await wait_until_async(no_tasks)
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
        await stuck.wait()
        (task,) = server._tasks
        await server.close(timeout=0.1)
        assert not server._tasks  # forgotten at once, though it ends only when it runs next
        await asyncio.wait([task], timeout=5)
        assert task.cancelled() and not server._tasks
        writer.close()

    run(main())


def test_broadcast_encodes_once_and_reaches_everyone() -> None:
    async def main() -> None:
        server = Server()
        members: set[WebSocket] = set()
        ready = asyncio.Event()

        @server.get("/ws")
        async def room(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            members.add(ws)
            if len(members) == 3:
                ready.set()
            async for message in ws:
                broadcast(members, message)
            members.discard(ws)

        url = await started(server)
        clients = [await connect(url) for _ in range(3)]
        await ready.wait()
        await clients[0].send("to all")
        for ws in clients:
            assert await ws.recv() == "to all"
        await clients[1].send(b"\x01\x02")
        for ws in clients:
            assert await ws.recv() == b"\x01\x02"
        for ws in clients:
            await ws.close()
        await server.close()

    run(main())


def test_broadcast_skips_closed_and_slow_connections() -> None:
    async def main() -> None:
        server = echo_server()
        url = await started(server)
        a, b = await connect(url), await connect(url)

        async def both_upgraded() -> bool:
            return len(server.connections) == 2

        await wait_until_async(both_upgraded)
        conns = list(server.connections)
        slow = conns[0]
        slow._session.writing_paused = True
        assert broadcast(conns, "x") == 1
        slow._session.writing_paused = False
        await b.close()

        async def one_open() -> bool:
            return sum(ws.is_open for ws in conns) == 1

        await wait_until_async(one_open)
        assert broadcast(conns, "y") == 1
        await a.close()
        await server.close()

    run(main())


def test_many_concurrent_clients_echo_intact_and_in_order() -> None:
    """500 clients each echo 200 messages of random sizes (0 B to 64 KiB)."""

    async def main() -> None:
        server = echo_server()
        await server.listen(0, backlog=1024)
        url = f"ws://127.0.0.1:{server.port}/ws"
        rng = random.Random(1234)
        blob = os.urandom(65536)

        async def client(n: int) -> int:
            sizes = [rng.choice((0, 1, 125, 126, 1000, 65535, 65536, rng.randrange(65537))) for _ in range(200)]
            async with connect(url) as ws:
                for i, size in enumerate(sizes):
                    message: str | bytes = blob[:size] if i % 2 else "é" * (size // 2)
                    await ws.send(message)
                    assert await ws.recv() == message
            return n

        done = await asyncio.gather(*(client(n) for n in range(500)))
        assert sorted(done) == list(range(500))
        await server.close()

    # 36 s in pure Python without coverage; under coverage on a busy shared machine it passed 60 s once.
    run(main(), timeout=300)


def test_reply_to_earlier_message_precedes_the_failure_close() -> None:
    """Autobahn's strict behaviour: echo what came before a protocol error, then fail."""

    async def main() -> None:
        server = echo_server()
        await server.listen(0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            UPGRADE
            # In the same packet as the request: a text frame, then one with RSV2 set.
            + bytes((0x81, 0x82))
            + b"\x00\x00\x00\x00hi"
            + bytes((0xA1, 0x82))
            + b"\x00\x00\x00\x00no"
        )
        await reader.readuntil(b"\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        assert data[:4] == b"\x81\x02hi"
        assert data[4] == 0x88 and data[6:8] == (1002).to_bytes(2, "big")
        writer.close()
        await server.close()

    run(main())


def test_broadcast_shares_one_compressed_frame_without_context_takeover() -> None:
    async def main() -> None:
        server = Server(Options(enable_compression=True, server_no_context_takeover=True))
        members: list[WebSocket] = []
        ready = asyncio.Event()

        @server.get("/ws")
        async def room(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            members.append(ws)
            if len(members) == 3:
                ready.set()
            await ws.recv()

        url = await started(server)
        clients = [await connect(url, options=Options(enable_compression=True)) for _ in range(3)]
        await ready.wait()
        extension = members[0].core.extensions[0]
        calls = 0
        original = type(extension).encode

        def counting(self: Any, data: bytes) -> Any:
            nonlocal calls
            calls += 1
            return original(self, data)

        type(extension).encode = counting  # type: ignore[method-assign]
        try:
            text = '{"event": "tick", "values": [1, 2, 3]}' * 20
            assert broadcast(members, text) == 3
        finally:
            type(extension).encode = original  # type: ignore[method-assign]
        assert calls == 1
        for ws in clients:
            assert ws.extensions == ["permessage-deflate"]
            assert await ws.recv() == text
        for ws in clients:
            await ws.close()
        await server.close()

    run(main())


def test_echo_on_uvloop() -> None:
    import uvloop

    async def main() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        server = echo_server(Options(ping_interval=0.05, ping_timeout=1))
        url = await started(server)
        async with connect(url) as ws:
            for message in ["on uvloop", b"\x00" * 100000]:
                await ws.send(message)
                assert await ws.recv() == message
            assert await ws.ping() >= 0
            # The server's heartbeat on uvloop's timers; it pings again only once its last ping was answered.
            pings = 0
            while pings < 3:
                frame = await asyncio.wait_for(ws.recv_frame(), 5)
                assert frame is not None and frame.opcode == Opcode.PING, frame
                pings += 1
        async with ws_connect(url) as client:
            await client.send("interop")
            assert await client.recv() == "interop"
        await server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(main(), 30))


def test_tls_wss_both_ways() -> None:
    import ssl

    import trustme

    authority = trustme.CA()
    cert = authority.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def main() -> None:
        server = echo_server()
        server.ssl = server_context
        await server.listen(0, "localhost")
        url = f"wss://localhost:{server.port}/ws"
        async with connect(url, ssl=client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"
        async with ws_connect(url, ssl=client_context) as client:
            await client.send(b"bytes over tls")
            assert await client.recv() == b"bytes over tls"
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(url)  # the system trust store does not know this CA
        await server.close()

    run(main())


def test_close_while_reading_is_paused_completes_promptly() -> None:
    async def main() -> None:
        result: asyncio.Future[tuple[int | None, float]] = asyncio.get_running_loop().create_future()
        server = Server(Options(max_queue=2, close_timeout=3))

        @server.get("/ws")
        async def stalled(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()

            async def paused() -> bool:
                return bool(ws._session.reading_paused)

            try:
                await wait_until_async(paused)
            except AssertionError as exc:
                result.set_exception(exc)
                return
            started_at = asyncio.get_running_loop().time()
            await ws.close(4001, "done")
            result.set_result((ws.close_code, asyncio.get_running_loop().time() - started_at))

        url = await started(server)
        async with connect(url) as ws:
            for _ in range(50):
                await ws.send(b"x" * 10000)
            assert await ws.recv() is None
        code, elapsed = await asyncio.wait_for(result, 10)
        assert code == 4001 and elapsed < 1
        await server.close()

    run(main())


def test_run_picks_uvloop_when_installed() -> None:
    import uvloop

    from wsstack.asyncio.server import _loop_factory

    assert _loop_factory("asyncio") is None
    assert _loop_factory("auto") is uvloop.new_event_loop
    assert _loop_factory("uvloop") is uvloop.new_event_loop
    with pytest.raises(ValueError):
        _loop_factory("trio")


def test_the_heartbeat_pings_every_interval_even_when_the_timeout_is_longer() -> None:
    async def main() -> None:
        server = echo_server(Options(ping_interval=0.1, ping_timeout=5.0))
        url = await started(server)
        async with connect(url, options=Options(ping_interval=None)) as ws:
            loop = asyncio.get_running_loop()
            pings = 0
            deadline = loop.time() + 1.0
            while loop.time() < deadline:
                frame = await asyncio.wait_for(ws.recv_frame(), 1.0)
                if frame is not None and frame.opcode == Opcode.PING:
                    pings += 1
            assert pings >= 6  # about ten; before the fix, one per ping_timeout
        await server.close()

    run(main())
