"""Interoperation: the threaded transport against websockets' threaded client and server, and our asyncio side."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from sync_helpers import STEP, Message, echo_server, serving
from waiting import bounded
from wsstack import asyncio as wsasyncio
from wsstack.options import Options
from wsstack.sync import Context, Server, connect


@bounded(30)
def test_websockets_sync_client_against_our_server(echo_url: str) -> None:
    with ws_connect(echo_url, compression=None) as client:
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
def test_our_asyncio_client_against_our_sync_server(echo_url: str) -> None:
    async def main(url: str) -> None:
        async with wsasyncio.connect(url) as ws:
            messages: list[Message] = ["asyncio to sync", b"\x01" * 100000]
            for message in messages:
                await ws.send(message)
                assert await ws.recv() == message
            assert await ws.ping() >= 0
        assert ws.close_code == 1000

    asyncio.run(asyncio.wait_for(main(echo_url), STEP))


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
