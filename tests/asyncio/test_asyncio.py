"""The asyncio transport over real loopback sockets, against itself and the websockets package."""

from __future__ import annotations

import asyncio
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
from wsstack.errors import ConnectionClosed, InvalidHandshake
from wsstack.frames import Opcode
from wsstack.options import Options

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


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
            while (frame := await ws.recv_frame()) is not None:
                frames.append(frame)
                if frame.opcode == Opcode.CLOSE:
                    break

        url = await started(server)
        async with ws_connect(url) as client:
            await client.send(["frag", "mented"])
            await client.ping(b"p")
            await client.send(b"bin")
        await server.close()
        assert [(f.opcode, f.payload, f.fin) for f in frames] == [
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

    run(main())


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
