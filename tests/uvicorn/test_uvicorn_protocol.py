"""wsstack.uvicorn under a real uvicorn server: what uvicorn's own suite does not cover.

Compression, flow control both ways (a fast sender against a slow
application, a client that never reads), ``ws_max_queue``, keepalive,
``--limit-concurrency``, a peer's protocol error and the application's
mistakes. uvicorn runs in the test's event loop on a free loopback port;
the clients are websockets' and plain sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from helpers import masked
from waiting import wait_until_async
from wsstack.options import Options
from wsstack.uvicorn import WebSocketProtocol

App = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
    Awaitable[None],
]
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serving(app: App, **settings: Any) -> AsyncIterator[uvicorn.Server]:
    """A uvicorn server with our protocol on a free loopback port, shut down on exit."""
    settings.setdefault("ws", WebSocketProtocol)
    # An application a failed test left waiting is cancelled rather than waited for.
    settings.setdefault("timeout_graceful_shutdown", 5)
    settings.setdefault("log_level", "warning")
    # uvicorn's own logging set-up stops its records from propagating to where caplog sees them.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None, **settings)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until_async(lambda: _started(server))
    try:
        yield server
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server) -> bool:
    return server.started


def port_of(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


def url_of(server: uvicorn.Server) -> str:
    return f"ws://127.0.0.1:{port_of(server)}/"


def ours(server: uvicorn.Server) -> list[WebSocketProtocol]:
    return [p for p in server.server_state.connections if isinstance(p, WebSocketProtocol)]


def protocol_of(server: uvicorn.Server) -> WebSocketProtocol:
    (protocol,) = ours(server)
    return protocol


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")})


async def raw_client(server: uvicorn.Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(UPGRADE)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    return reader, writer


# ---------------------------------------------------------------- compression


def test_compression_is_negotiated_with_our_window() -> None:
    async def main() -> None:
        async with serving(echo) as server, connect(url_of(server), compression="deflate") as ws:
            assert ws.response is not None
            answer = ws.response.headers["Sec-WebSocket-Extensions"]
            assert answer.startswith("permessage-deflate")
            assert "server_max_window_bits=12" in answer
            text = "compressible " * 5000
            await ws.send(text)
            assert await ws.recv() == text
            assert protocol_of(server).core.extensions[0].name == "permessage-deflate"

    run(main())


def test_compression_off_when_uvicorn_says_so() -> None:
    async def main() -> None:
        async with (
            serving(echo, ws_per_message_deflate=False) as server,
            connect(url_of(server), compression="deflate") as ws,
        ):
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send(b"x" * 1000)
            assert await ws.recv() == b"x" * 1000

    run(main())


# ---------------------------------------------------------------- flow control


def test_a_fast_sender_is_held_back_by_a_slow_application() -> None:
    """Reading stops while the application does not take messages: the queue stays bounded, nothing is lost."""
    count, size = 20000, 1024  # 20 MiB: more than the kernel buffers on both sides
    go = asyncio.Event()
    got: list[bytes] = []

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        while (message := await receive())["type"] == "websocket.receive":
            got.append(message["bytes"])
            if len(got) == count:
                await send({"type": "websocket.close"})

    def payload(i: int) -> bytes:
        return i.to_bytes(4, "big") * (size // 4)

    async def main() -> None:
        async with serving(slow, ws_max_queue=8) as server:
            _, writer = await raw_client(server)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            # Masked with the all-zero key, the payload goes as it is.
            frames = [bytes((0x82, 0xFE)) + size.to_bytes(2, "big") + bytes(4) + payload(i) for i in range(count)]
            sending = asyncio.create_task(_write_all(writer, frames))
            # The client cannot get everything out: the server stopped reading.
            await asyncio.sleep(0.5)
            assert not sending.done()
            protocol = protocol_of(server)
            assert protocol.session.reading_paused
            # At most what one read brought beyond the bound (reads of 256 KiB, messages of 1 KiB).
            assert len(protocol.session.queue) <= 8 + 262144 // size
            go.set()
            await sending
            await wait_until_async(lambda: _is(len(got) == count))
            assert got == [payload(i) for i in range(count)]
            writer.close()

    run(main())


async def _write_all(writer: asyncio.StreamWriter, frames: list[bytes]) -> None:
    for frame in frames:
        writer.write(frame)
        await writer.drain()


async def _is(value: bool) -> bool:
    return value


def test_an_application_sending_to_a_client_that_never_reads_waits() -> None:
    """``send`` waits once the transport's buffer is full; it fails with ClientDisconnected when the client goes."""
    sent = 0
    failure: list[BaseException] = []

    async def flood(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"y" * 16384})
                sent += 1
        except ClientDisconnected as exc:
            failure.append(exc)

    async def main() -> None:
        async with serving(flood, ws_per_message_deflate=False) as server:
            sock = socket.create_connection(("127.0.0.1", port_of(server)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.sendall(UPGRADE)
            await wait_until_async(lambda: _is(sent > 0))
            await asyncio.sleep(0.3)
            stalled = sent
            await asyncio.sleep(0.3)
            assert sent == stalled  # waiting, not buffering without end
            protocol = protocol_of(server)
            # Bounded by the transport's high-water mark (64 KiB by default) and one message.
            assert protocol.transport.get_write_buffer_size() <= 65536 + 16384 + 200
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # a reset: the client is gone without a close frame
            await wait_until_async(lambda: _is(bool(failure)))

    run(main())


# ---------------------------------------------------------------- keepalive


def test_keepalive_pings_and_records_when() -> None:
    async def main() -> None:
        async with (
            serving(echo, ws_ping_interval=0.05, ws_ping_timeout=5.0) as server,
            connect(url_of(server), ping_interval=None) as ws,
        ):
            protocol = protocol_of(server)
            assert protocol.ping_timer is not None
            await wait_until_async(lambda: _is(protocol.ping_sent_at > 0))
            await asyncio.sleep(0.2)  # pings answered: the connection lives on
            await ws.send("still here")
            assert await ws.recv() == "still here"

    run(main())


@pytest.mark.parametrize("interval", [None, 0, -1.0])
def test_no_keepalive_timer_without_keepalive(interval: float | None) -> None:
    """uvicorn's own implementations take an interval of 0 or less as "off", as ``None``; so do we."""

    async def main() -> None:
        async with (
            serving(echo, ws_ping_interval=interval) as server,
            connect(url_of(server), ping_interval=None) as ws,
        ):
            protocol = protocol_of(server)
            assert protocol.ping_timer is None
            assert protocol.ping_sent_at == 0.0
            await ws.send("no heartbeat")
            assert await ws.recv() == "no heartbeat"

    run(main())


# ---------------------------------------------------------------- limits and errors


def test_limit_concurrency_answers_503() -> None:
    async def main() -> None:
        async with serving(echo, limit_concurrency=1) as server, connect(url_of(server)) as first:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await connect(url_of(server))
            assert refused.value.response.status_code == 503
            await first.send("the first is served")
            assert await first.recv() == "the first is served"

    run(main())


def test_a_peer_protocol_error_reaches_app_and_client_with_its_code() -> None:
    events: list[dict[str, Any]] = []

    async def record(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            events.append(await receive())
            if events[-1]["type"] == "websocket.disconnect":
                return

    async def main() -> None:
        async with serving(record) as server:
            reader, writer = await raw_client(server)
            writer.write(masked(0x81, b"fine") + masked(0x81, b"\xff\xfe"))
            head = await reader.readexactly(2)
            assert head[0] == 0x88  # a close frame, first thing after the handshake
            close = await reader.readexactly(head[1])
            assert int.from_bytes(close[:2], "big") == 1007
            writer.close()
            await wait_until_async(lambda: _is(len(events) == 2))
        assert events[0] == {"type": "websocket.receive", "text": "fine"}
        assert events[1]["type"] == "websocket.disconnect" and events[1]["code"] == 1007

    run(main())


def test_a_message_over_ws_max_size_closes_with_1009() -> None:
    async def main() -> None:
        async with serving(echo, ws_max_size=1000) as server:
            async with connect(url_of(server), compression=None) as ws:
                await ws.send(b"z" * 1000)
                assert await ws.recv() == b"z" * 1000
                await ws.send(b"z" * 1001)
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    run(main())


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "websocket.send"}, TypeError),
        ({"type": "websocket.send", "text": b"not str"}, TypeError),
        ({"type": "websocket.close", "code": 1005}, ValueError),
        ({"type": "websocket.accept"}, RuntimeError),
    ],
    ids=["neither-text-nor-bytes", "bytes-as-text", "reserved-close-code", "second-accept"],
)
def test_application_mistakes_raise_at_the_call(message: dict[str, Any], error: type[Exception]) -> None:
    raised: list[BaseException] = []

    async def wrong(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send(message)
        except Exception as exc:
            raised.append(exc)
        await send({"type": "websocket.close", "code": 1000})

    async def main() -> None:
        async with serving(wrong) as server, connect(url_of(server)) as ws:
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                await ws.recv()
        assert [type(exc) for exc in raised] == [error]

    run(main())


def test_a_second_concurrent_receive_is_refused_and_the_first_gets_the_disconnect() -> None:
    """One receiver at a time, as in wsstack's own transports: the second used to take the
    first one's place, and the first then waited forever, even for the disconnect."""
    outcome: list[Any] = []

    async def two_receivers(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        first = asyncio.ensure_future(receive())
        await asyncio.sleep(0)  # the first receive() is waiting
        try:
            await receive()
        except RuntimeError as exc:
            outcome.append(exc)
        await send({"type": "websocket.send", "text": "ready"})
        outcome.append((await asyncio.wait_for(first, 5))["text"])
        outcome.append((await asyncio.wait_for(receive(), 5))["type"])

    async def main() -> None:
        async with serving(two_receivers) as server, connect(url_of(server)) as ws:
            assert await ws.recv() == "ready"
            await ws.send("for the first")
        await wait_until_async(lambda: _is(len(outcome) == 3))
        assert "another receive() is already waiting" in str(outcome[0])
        assert outcome[1:] == ["for the first", "websocket.disconnect"]

    run(main())


def test_a_receive_cancelled_a_moment_ago_is_no_longer_a_receiver() -> None:
    """``task.cancel()`` and at once another ``receive()``: no RuntimeError for the one that is leaving."""
    outcome: list[Any] = []

    async def cancel_and_receive(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        abandoned = asyncio.ensure_future(receive())
        await asyncio.sleep(0)  # it waits
        abandoned.cancel()  # no await: that task has not run its cancellation yet
        await send({"type": "websocket.send", "text": "ready"})
        outcome.append(abandoned.done())  # False: the receive() below runs while it is still leaving
        try:
            outcome.append((await receive())["text"])
        except RuntimeError as exc:
            outcome.append(exc)
        await send({"type": "websocket.close", "code": 1000})

    async def main() -> None:
        async with serving(cancel_and_receive) as server, connect(url_of(server)) as ws:
            assert await ws.recv() == "ready"
            await ws.send("after")
            await wait_until_async(lambda: _is(len(outcome) == 2))
        assert outcome == [False, "after"]

    run(main())


def test_a_subclass_sets_what_uvicorn_has_no_setting_for() -> None:
    class FewFragments(WebSocketProtocol):
        @classmethod
        def options(cls, config: uvicorn.Config) -> Options:
            return Options(max_fragments=3)

    async def main() -> None:
        async with serving(echo, ws=FewFragments) as server:
            async with connect(url_of(server), compression=None) as ws:
                # websockets ends a fragmented message with an empty frame: three frames, then four.
                await ws.send(["a", "b"])
                assert await ws.recv() == "ab"
                await ws.send(["a", "b", "c"])
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    run(main())


def test_accepted_and_refused_upgrades_are_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/no":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with serving(refuse, log_level="info") as server:
            async with connect(url_of(server)) as ws:
                with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                    await ws.recv()
            with pytest.raises(websockets.exceptions.InvalidStatus):
                await connect(url_of(server) + "no")

    # Another test's uvicorn may have set up logging with propagation off: listen on the logger itself.
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(caplog.handler)
    try:
        run(main())
    finally:
        logger.removeHandler(caplog.handler)
    lines = [record.getMessage() for record in caplog.records if record.name == "uvicorn.error"]
    assert any(line.endswith('"WebSocket /" [accepted]') for line in lines)
    assert any(line.endswith('"WebSocket /no" 403') for line in lines)


def test_early_frames_wait_for_the_accept() -> None:
    """Frames a client sends right behind its request are read once the application accepts."""

    async def late(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.1)
        await echo_after_accept(receive, send)

    async def main() -> None:
        async with serving(late) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            writer.write(UPGRADE)
            # uvicorn's HTTP protocol hands over only the request itself: bytes behind it in the
            # same read are not passed on, so the frame goes out once the request is in.
            await asyncio.sleep(0.03)
            writer.write(masked(0x81, b"early"))
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await reader.readexactly(7) == bytes((0x81, 5)) + b"early"
            writer.close()

    run(main())


async def echo_after_accept(receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")})


def test_a_denial_whose_length_does_not_match_its_body_becomes_a_500() -> None:
    async def deny(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"content-length", b"5")]})
        await send({"type": "websocket.http.response.body", "body": b"longer than five"})

    async def main() -> None:
        async with serving(deny) as server:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await connect(url_of(server))
            assert refused.value.response.status_code == 500

    run(main())


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.accept", "headers": [("x-str", "not bytes")]},
        {"type": "websocket.http.response.start", "status": 400, "headers": [(b"x", 1)]},
    ],
    ids=["accept-headers-as-str", "response-header-value-as-int"],
)
def test_malformed_asgi_headers_are_a_type_error_and_a_500(message: dict[str, Any]) -> None:
    raised: list[BaseException] = []

    async def wrong(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        try:
            await send(message)
        except TypeError as exc:
            raised.append(exc)
            raise

    async def main() -> None:
        async with serving(wrong) as server:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await connect(url_of(server))
            assert refused.value.response.status_code == 500
        assert len(raised) == 1

    run(main())


def test_a_response_body_must_be_bytes() -> None:
    raised: list[BaseException] = []

    async def wrong(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        try:
            await send({"type": "websocket.http.response.body", "body": "text"})
        except TypeError as exc:
            raised.append(exc)
        await send({"type": "websocket.http.response.body", "body": b"bytes"})

    async def main() -> None:
        async with serving(wrong) as server:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await connect(url_of(server))
            assert refused.value.response.status_code == 403
            assert refused.value.response.body == b"bytes"
        assert len(raised) == 1

    run(main())


def test_reset_contextvars_runs_the_application_in_a_fresh_context() -> None:
    async def main() -> None:
        async with serving(echo, reset_contextvars=True) as server, connect(url_of(server)) as ws:
            await ws.send("in a context of its own")
            assert await ws.recv() == "in a context of its own"

    run(main())


def test_a_flood_before_the_accept_pauses_reading_until_then() -> None:
    accept = asyncio.Event()

    async def late(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await accept.wait()
        await echo_after_accept(receive, send)

    async def main() -> None:
        async with serving(late) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            writer.write(UPGRADE)
            await asyncio.sleep(0.03)
            frame = bytes((0x82, 0xFE)) + (1000).to_bytes(2, "big") + bytes(4) + b"e" * 1000
            writer.write(frame * 100)  # 100 KB, past the 64 KiB the server takes before an accept
            await wait_until_async(lambda: _is(protocol_of(server).transport.is_reading() is False))
            accept.set()
            await reader.readuntil(b"\r\n\r\n")
            echoed = await reader.readexactly(100 * 1004)
            assert echoed == (bytes((0x82, 0x7E)) + (1000).to_bytes(2, "big") + b"e" * 1000) * 100
            writer.close()

    run(main())


def test_replies_held_back_inside_a_read_still_meet_flow_control() -> None:
    """An application answering one message with many, inside the read callback, still waits for the client."""
    sent = 0

    async def fan_out(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        with contextlib.suppress(ClientDisconnected):
            for _ in range(20000):
                await send({"type": "websocket.send", "bytes": b"f" * 1024})
                sent += 1

    async def main() -> None:
        async with serving(fan_out, ws_per_message_deflate=False) as server:
            sock = socket.create_connection(("127.0.0.1", port_of(server)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.sendall(UPGRADE)
            await wait_until_async(lambda: _is(bool(server.server_state.tasks)))
            sock.sendall(masked(0x82, b"go"))
            await wait_until_async(lambda: _is(sent > 0))
            await asyncio.sleep(0.3)
            stalled = sent
            await asyncio.sleep(0.3)
            assert sent == stalled < 20000  # waiting for the client, not buffering 20 MB
            assert protocol_of(server).transport.get_write_buffer_size() <= 2 * 65536 + 2048
            sock.close()

    run(main())


def test_a_reply_sent_inside_a_read_survives_the_application_returning() -> None:
    """The reply held back in the read callback is written before the transport closes."""

    async def reply_then_return(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": "reply:" + message["text"]})

    async def main() -> None:
        async with serving(reply_then_return) as server:
            for _ in range(3):
                async with connect(url_of(server)) as ws:
                    await ws.send("hi")
                    assert await ws.recv() == "reply:hi"

    run(main())


def test_every_send_after_the_client_vanished_raises_none_waits() -> None:
    """Writing was paused when the client reset: no send may wait for a drain that cannot come."""
    outcomes: list[str] = []

    async def flood(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while len(outcomes) < 2:
            try:
                await asyncio.wait_for(send({"type": "websocket.send", "bytes": b"x" * 65536}), 3)
            except TimeoutError:
                outcomes.append("waited")
            except ClientDisconnected:
                outcomes.append("raised")

    async def main() -> None:
        async with serving(flood, ws_per_message_deflate=False) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port_of(server)))
            sock.sendall(UPGRADE)
            await wait_until_async(lambda: _is(any(p.session.writing_paused for p in ours(server))))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
            await wait_until_async(lambda: _is(len(outcomes) == 2))
        assert outcomes == ["raised", "raised"]

    run(main())


def test_a_send_after_shutdown_is_client_disconnected_not_a_mistake() -> None:
    errors: list[BaseException] = []
    accepted = asyncio.Event()

    async def chatty(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        try:
            while True:
                await send({"type": "websocket.send", "text": "tick"})
                await asyncio.sleep(0)
        except Exception as exc:
            errors.append(exc)

    async def main() -> None:
        async with serving(chatty) as server:
            ws = await connect(url_of(server))
            await accepted.wait()
            protocol_of(server).shutdown()
            await wait_until_async(lambda: _is(bool(errors)))
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 1012
        assert [type(exc) for exc in errors] == [ClientDisconnected]

    run(main())


def test_accepting_a_subprotocol_not_offered_is_a_value_error_and_a_500() -> None:
    """The application's mistake, as in wsstack's own servers: its ``send`` raises, uvicorn answers 500."""
    raised: list[BaseException] = []

    async def forced(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "websocket.accept", "subprotocol": "chat"})
        except ValueError as exc:
            raised.append(exc)
            raise

    async def main() -> None:
        async with serving(forced) as server:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await connect(url_of(server), subprotocols=[Subprotocol("superchat")])
            assert refused.value.response.status_code == 500
        assert len(raised) == 1 and "'chat' was not offered" in str(raised[0])

    run(main())


def test_an_application_failing_in_the_middle_of_its_denial_body_answers_500() -> None:
    async def half(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 200, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b'{"items": [1, 2', "more_body": True})
        raise RuntimeError("the rest of the body could not be made")

    async def main() -> None:
        async with serving(half) as server:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await connect(url_of(server))
            assert refused.value.response.status_code == 500
            assert refused.value.response.body == b"Internal Server Error"

    run(main())


def test_an_application_that_only_sends_still_hears_pongs_and_the_close() -> None:
    """Reading held for an application that never reads is released: keepalive and the close still work."""

    async def push(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        with contextlib.suppress(ClientDisconnected):
            while True:
                await send({"type": "websocket.send", "text": "tick"})
                await asyncio.sleep(0.05)

    async def main() -> None:
        async with serving(push, ws_ping_interval=0.2, ws_ping_timeout=0.2) as server:
            ws = await connect(url_of(server), ping_interval=None, close_timeout=5)
            await ws.send("nobody reads this")
            for _ in range(15):  # most of a second: several intervals and timeouts
                assert await ws.recv() == "tick"
            assert protocol_of(server).core.state.name == "OPEN"
            loop = asyncio.get_running_loop()
            started = loop.time()
            await ws.close()
            assert ws.close_code == 1000  # the server read the close and answered it
            assert loop.time() - started < 1.0

    run(main())
