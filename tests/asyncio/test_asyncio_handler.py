"""Message handlers: set_message_handler() and send_nowait(), the callback way to consume a connection."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from helpers import masked
from waiting import wait_until_async
from wsstack.asyncio import Server, WebSocket, connect
from wsstack.errors import ConnectionClosed, InvalidState
from wsstack.frames import Frame, Opcode
from wsstack.options import Options


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def serve(setup: Callable[[WebSocket], Any], options: Options | None = None) -> tuple[Server, str]:
    """A server whose one route upgrades, runs ``setup(ws)`` and waits for the connection to end."""
    server = Server(options)

    @server.get("/")
    async def route(ctx: Any) -> None:
        ws = await ctx.upgrade_to_websocket()
        result = setup(ws)
        if asyncio.iscoroutine(result):
            await result
        await ws.wait_closed()

    await server.listen(0)
    return server, f"ws://127.0.0.1:{server.port}/"


def test_echo_handler_keeps_types_and_order() -> None:
    async def main() -> None:
        server, url = await serve(lambda ws: ws.set_message_handler(ws.send_nowait))
        async with connect(url) as ws:
            sent: list[str | bytes] = [os.urandom(i % 300) if i % 3 else f"text {i} é" for i in range(300)]
            for message in sent:
                await ws.send(message)  # many arrive in one read
            assert [await ws.recv() for _ in sent] == sent
        await server.close()

    run(main())


def test_queued_messages_reach_the_handler_first() -> None:
    async def main() -> None:
        seen: list[Any] = []
        three_queued = asyncio.Event()

        async def setup(ws: WebSocket) -> None:
            async def three_in_queue() -> bool:
                return len(ws._queue) >= 3

            await wait_until_async(three_in_queue)
            ws.set_message_handler(seen.append)
            three_queued.set()

        server, url = await serve(setup)
        async with connect(url) as ws:
            for i in range(3):
                await ws.send(f"early {i}")
            await three_queued.wait()
            await ws.send(b"late")
            await ws.ping()  # answered after the message before it was handled
            assert seen == ["early 0", "early 1", "early 2", b"late"]
        await server.close()

    run(main())


def test_recv_refused_while_a_handler_is_set_then_back_to_recv() -> None:
    async def main() -> None:
        got: list[Any] = []
        errors: list[Exception] = []
        handler_removed = asyncio.Event()

        async def setup(ws: WebSocket) -> None:
            handled = asyncio.Event()

            def handler(message: Any) -> None:
                got.append(message)
                handled.set()

            ws.set_message_handler(handler)
            for receive in (ws.recv, ws.recv_frame):
                try:
                    await receive()
                except InvalidState as exc:
                    errors.append(exc)
            await handled.wait()
            ws.set_message_handler(None)
            handler_removed.set()
            await ws.send(f"handler saw {got[0]}, recv sees {await ws.recv()}")

        server, url = await serve(setup)
        async with connect(url) as ws:
            await ws.send("one")
            await asyncio.wait_for(handler_removed.wait(), 10)  # "two" is for recv(), not the handler
            await ws.send("two")
            assert await ws.recv() == "handler saw one, recv sees two"
        assert len(errors) == 2
        await server.close()

    run(main())


@pytest.mark.parametrize("kind", ["raises", "coroutine"])
def test_failing_handler_closes_with_1011(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    async def broken_async(message: Any) -> None:
        raise AssertionError("never awaited, never run")

    def broken(message: Any) -> None:
        raise RuntimeError("bug in the handler")

    async def main() -> None:
        handler = broken if kind == "raises" else broken_async
        server, url = await serve(lambda ws: ws.set_message_handler(handler))
        async with connect(url) as ws:
            await ws.send("boom")
            assert await ws.recv() is None
            assert (ws.close_code, ws.close_reason) == (1011, "internal error")
        await server.close()

    with caplog.at_level(logging.ERROR, logger="wsstack"):
        run(main())
    assert any("message handler failed" in r.message for r in caplog.records)
    expected = "bug in the handler" if kind == "raises" else "returned an awaitable"
    assert any(expected in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_send_nowait_on_a_closed_connection_raises() -> None:
    async def main() -> None:
        results: list[BaseException] = []
        tried = asyncio.Event()

        async def setup(ws: WebSocket) -> None:
            try:
                await ws.close()
                try:
                    ws.send_nowait("too late")
                except ConnectionClosed as exc:
                    results.append(exc)
            finally:
                tried.set()

        server, url = await serve(setup)
        async with connect(url) as ws:
            assert await ws.recv() is None
        await asyncio.wait_for(tried.wait(), 10)
        assert len(results) == 1 and results[0].code == 1000  # type: ignore[attr-defined]
        await server.close()

    run(main())


def test_handler_in_frame_mode_gets_frames() -> None:
    async def main() -> None:
        frames: list[Frame] = []
        handler_set = asyncio.Event()

        async def setup(ws: WebSocket) -> None:
            first = await ws.recv_frame()
            assert first is not None
            frames.append(first)
            ws.set_message_handler(frames.append)
            handler_set.set()

        async def three_frames() -> bool:
            return len(frames) >= 3

        server, url = await serve(setup)
        async with connect(url) as ws:
            await ws.send("a")
            await asyncio.wait_for(handler_set.wait(), 10)  # what follows arrives for the handler
            await ws.send(b"b")
            await ws.ping(b"p")
            await wait_until_async(three_frames)
        await server.close()
        assert [(f.opcode, f.payload) for f in frames[:3]] == [
            (Opcode.TEXT, b"a"),
            (Opcode.BINARY, b"b"),
            (Opcode.PING, b"p"),
        ]

    run(main())


def test_peer_that_does_not_read_pauses_the_handler_side() -> None:
    """Echoing by handler to a peer that never reads: reading pauses, memory stays bounded, nothing is lost."""

    async def main() -> None:
        connections: list[WebSocket] = []

        def setup(ws: WebSocket) -> None:
            connections.append(ws)
            ws.set_message_handler(ws.send_nowait)

        options = Options(write_limit=256 << 10, ping_interval=None)
        server, url = await serve(setup, options)
        message = os.urandom(64 << 10)
        count = 400  # 25 MiB each way
        async with connect(url, options=Options(ping_interval=None, max_queue=4)) as ws:
            sender = asyncio.ensure_future(_send_all(ws, message, count))
            # The client does not read: the server must stop reading instead of buffering.
            largest = 0

            async def paused_with_replies_buffered() -> bool:
                nonlocal largest
                if connections:
                    largest = max(largest, connections[0]._transport.get_write_buffer_size())
                    if connections[0]._session.reading_paused and largest:
                        return True
                return sender.done()

            await wait_until_async(paused_with_replies_buffered, interval=0.02)
            assert connections[0]._session.reading_paused
            assert largest <= (256 << 10) + len(message) * 8  # bounded by the limit, not by what was sent
            received = 0
            while received < count:
                assert await ws.recv() == message
                received += 1
            await sender
        await server.close()

    run(main())


def test_a_handler_client_pipelining_to_a_handler_server_gets_every_echo() -> None:
    """Both ends on handlers, the client 8 MiB ahead: only the server pauses reading for its replies.

    If the client also stopped reading while its own sends were backed up,
    each end would wait for the other to read: a deadlock as soon as the
    kernel's buffers are full.
    """

    def small_kernel_buffers(ws: WebSocket) -> None:
        # Loopback's autotuned buffers hold megabytes: keep them small so that they fill.
        sock = ws._transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)

    def echo(ws: WebSocket) -> None:
        small_kernel_buffers(ws)
        ws.set_message_handler(ws.send_nowait)

    async def main() -> None:
        server, url = await serve(echo)
        message = os.urandom(64 << 10)
        count = 128
        echoed = 0
        all_back = asyncio.Event()

        def on_echo(echo: Any) -> None:
            nonlocal echoed
            assert echo == message
            echoed += 1
            if echoed == count:
                all_back.set()

        async with connect(url, options=Options(ping_interval=None)) as ws:
            small_kernel_buffers(ws)
            ws.set_message_handler(on_echo)
            for _ in range(count):
                ws.send_nowait(message)  # the whole batch at once, as a pipelining client does
            await asyncio.wait_for(all_back.wait(), 20)
            assert echoed == count
        await server.close()

    run(main())


async def _send_all(ws: WebSocket, message: bytes, count: int) -> None:
    for _ in range(count):
        await ws.send(message)


# ---- with a fake transport: write pressure and closing in exact orders ------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0  # written at once


def open_websocket(loop: asyncio.AbstractEventLoop) -> tuple[WebSocket, FakeTransport]:
    from wsstack.connection import ServerConnection, State

    core = ServerConnection(Options(ping_interval=None), state=State.OPEN)
    transport = FakeTransport()
    return WebSocket(core, transport, loop), transport


def client_frame(opcode: int, payload: bytes) -> bytes:
    return masked(0x80 | opcode, payload)


def test_failing_handler_resumes_reading_paused_for_its_replies() -> None:
    async def main() -> None:
        ws, transport = open_websocket(asyncio.get_running_loop())

        def handler(message: Any) -> None:
            if message == b"boom":
                raise RuntimeError("bug")
            ws.send_nowait(message)
            ws.pause_writing()  # as asyncio would once the buffer is over its limit

        ws.set_message_handler(handler)
        ws.data_received(client_frame(0x2, b"a") + client_frame(0x2, b"boom"))
        assert transport.reading, "the peer's close frame could never be read"
        assert b"\x88\x10\x03\xf3internal error" in transport.written  # our close frame: 1011
        ws.data_received(client_frame(0x8, b"\x03\xf3"))
        assert transport.closed

    run(main())


def test_handler_set_while_writing_is_paused_pauses_reading() -> None:
    async def main() -> None:
        ws, transport = open_websocket(asyncio.get_running_loop())
        ws.pause_writing()
        ws.set_message_handler(ws.send_nowait)
        assert not transport.reading
        ws.resume_writing()
        assert transport.reading

    run(main())


def test_reply_to_a_message_that_came_with_the_close_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        ws, transport = open_websocket(asyncio.get_running_loop())
        ws.set_message_handler(ws.send_nowait)
        ws.data_received(client_frame(0x1, b"last words") + client_frame(0x8, b"\x03\xe8"))
        assert ws.core.close_code == 1000 and transport.closed

    with caplog.at_level(logging.DEBUG, logger="wsstack"):
        run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_handler_cannot_take_over_from_a_waiting_recv() -> None:
    async def main() -> None:
        ws, _ = open_websocket(asyncio.get_running_loop())
        waiting = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)  # one loop iteration: the recv() task is now waiting
        with pytest.raises(InvalidState):
            ws.set_message_handler(print)
        ws.data_received(client_frame(0x1, b"for recv"))
        assert await waiting == "for recv"

    run(main())


def test_a_peers_error_after_a_message_is_answered_once_the_handler_has_it() -> None:
    """The held close frame goes out right after the handler's reply, not close_timeout later."""

    async def main() -> None:
        options = Options(close_timeout=5.0, ping_interval=None)
        server, url = await serve(lambda ws: ws.set_message_handler(ws.send_nowait), options)
        async with connect(url, options=Options(ping_interval=None)) as ws:
            loop = asyncio.get_running_loop()
            started = loop.time()
            # A message, then a frame with a reserved opcode, in one write.
            ws._transport.write(masked(0x81, b"hi") + masked(0x83, b""))
            assert await ws.recv() == "hi"
            assert await ws.recv() is None
            assert ws.close_code == 1002
            assert loop.time() - started < 2.0
        await server.close()

    run(main())


def test_waiting_in_wait_closed_keeps_an_open_connection() -> None:
    """wait_closed() only bounds a closing handshake; an open connection lives past close_timeout."""

    async def main() -> None:
        options = Options(close_timeout=0.3, ping_interval=None)
        server, url = await serve(lambda ws: ws.set_message_handler(ws.send_nowait), options)
        async with connect(url, options=Options(ping_interval=None)) as ws:
            await asyncio.sleep(0.6)  # twice close_timeout, idle: the behaviour under test
            await ws.send("still here")
            assert await ws.recv() == "still here"
        await server.close()

    run(main())
