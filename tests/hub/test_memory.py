"""The hub over the in-memory backend: real servers and clients on loopback, one process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from hub_rooms import Recorder, joined, room_server, run
from waiting import wait_until, wait_until_async
from wsstack.hub import Hub, MemoryBackend, SyncHub
from wsstack.options import Options
from wsstack.sync import Context as SyncContext
from wsstack.sync import Server as SyncServer
from wsstack.sync import connect as sync_connect

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_publish_reaches_the_topics_subscribers_and_only_them() -> None:
    async def main() -> None:
        hub = Hub()
        await hub.start()
        server = room_server(hub)
        await server.listen(0)
        base = f"ws://127.0.0.1:{server.port}/ws"
        a, b = await joined(base), await joined(base)
        other = await joined(base + "?topic=ticker")
        await a.send("hello")
        assert await a.recv() == "hello" and await b.recv() == "hello"
        await other.send(b"\x00tick")
        assert await other.recv() == b"\x00tick"
        await hub.publish("room", bytearray(b"bin"))
        assert await b.recv() == b"bin"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(other.recv(), 0.2)
        for ws in (a, b, other):
            await ws.close()
        await server.close()
        await hub.close()

    run(main())


def test_closed_connections_leave_their_topics() -> None:
    async def main() -> None:
        hub = Hub()
        await hub.start()
        server = room_server(hub)
        await server.listen(0)
        url = f"ws://127.0.0.1:{server.port}/ws"
        a, b = await joined(url), await joined(url)
        assert len(hub.subscribers("room")) == 2
        await a.close()

        async def one_left() -> bool:
            return len(hub.subscribers("room")) == 1

        await wait_until_async(one_left)
        b_server = next(iter(hub.subscribers("room")))
        hub.unsubscribe(b_server, "room")
        assert not hub.subscribers("room")
        await hub.publish("room", "nobody")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.recv(), 0.2)
        await b.close()
        await server.close()
        await hub.close()

    run(main())


def test_local_fan_out_encodes_each_message_once() -> None:
    async def main() -> None:
        hub = Hub()
        await hub.start()
        recorders = [Recorder() for _ in range(5)]
        for recorder in recorders:
            await hub.subscribe(recorder, "t")
        await hub.publish("t", "once")
        (first,) = recorders[0].frames
        assert first.message == "once"
        assert all(r.frames[0] is first for r in recorders)
        await hub.close()

    run(main())


def test_a_slow_subscriber_is_skipped_and_never_blocks_the_topic() -> None:
    """A client that reads nothing: the server's write buffer for it fills and it misses messages; the others get all."""

    async def main() -> None:
        hub = Hub()
        await hub.start()
        server = room_server(hub, Options(write_limit=64 * 1024))
        await server.listen(0)
        url = f"ws://127.0.0.1:{server.port}/ws"
        fast = await joined(url)
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window stays small
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(UPGRADE)

        async def two() -> bool:
            return len(hub.subscribers("room")) == 2

        await wait_until_async(two)
        payload = b"x" * 65536
        count = 300
        for i in range(count):
            # The fast one reads each message before the next: its buffer drains, the slow one's does not.
            await hub.publish("room", payload + i.to_bytes(4, "big"))
            assert await fast.recv() == payload + i.to_bytes(4, "big")
        slow.setblocking(False)
        received = 0
        await asyncio.sleep(0.2)
        while True:
            try:
                chunk = slow.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.1)
                try:
                    chunk = slow.recv(1 << 20)
                except BlockingIOError:
                    break
            if not chunk:
                break
            received += len(chunk)
        # Most messages were skipped for it: it got what the kernel buffers held (a few MiB at most).
        assert received < count * len(payload) / 2
        slow.close()
        await fast.close()
        await server.close()
        await hub.close()

    run(main())


def test_history_and_bad_calls() -> None:
    async def main() -> None:
        hub = Hub(MemoryBackend(history=3))
        with pytest.raises(RuntimeError, match="not started"):
            await hub.subscribe(Recorder(), "t")
        await hub.start()
        for i in range(5):
            await hub.publish("t", str(i))
        assert await hub.history("t", 2) == ["3", "4"]
        assert await hub.history("t", 10) == ["2", "3", "4"]
        assert await hub.history("none", 10) == []
        with pytest.raises(TypeError, match="not dict"):
            await hub.publish("t", {})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="topic"):
            await hub.subscribe(Recorder(), 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="count"):
            await hub.history("t", -1)
        with pytest.raises(ValueError, match="history"):
            MemoryBackend(history=-1)
        await hub.close()

    run(main())


def test_close_callbacks_run_once_the_connection_is_gone_in_both_transports() -> None:
    async def main() -> None:
        hub = Hub()
        await hub.start()
        server = room_server(hub)
        await server.listen(0)
        ws = await joined(f"ws://127.0.0.1:{server.port}/ws")
        seen: list[object] = []
        ws.add_close_callback(seen.append)
        ws.add_close_callback(lambda _: 1 / 0)  # logged, and the others still run
        ws.add_close_callback(seen.append)
        await ws.close()
        assert seen == [ws, ws]
        ws.add_close_callback(seen.append)  # gone already: at once
        assert seen == [ws, ws, ws]
        await server.close()
        await hub.close()

    run(main())


def sync_room_server(hub: SyncHub) -> SyncServer:
    server = SyncServer()

    @server.get("/ws")
    def room(ctx: SyncContext) -> None:
        ws = ctx.upgrade_to_websocket()
        hub.subscribe(ws, "room")
        ws.send("!subscribed")
        for message in ws:
            hub.publish("room", message)

    return server


def test_sync_hub_serves_the_blocking_transport() -> None:
    with SyncHub(MemoryBackend(history=10)) as hub:
        server = sync_room_server(hub)
        server.listen(0, "127.0.0.1")
        try:
            url = f"ws://127.0.0.1:{server.port}/ws"
            with sync_connect(url) as a, sync_connect(url) as b:
                assert a.recv(5) == "!subscribed" and b.recv(5) == "!subscribed"
                a.send("from a")
                assert a.recv(5) == "from a" and b.recv(5) == "from a"
                b.send(b"from b")
                assert a.recv(5) == b"from b" and b.recv(5) == b"from b"
                assert hub.history("room", 5) == ["from a", b"from b"]
                seen: list[object] = []
                a.add_close_callback(seen.append)
            wait_until(lambda: not hub.subscribers("room"))
            assert seen == [a]
        finally:
            server.shutdown(timeout=5)


def test_topics_per_connection_and_leaving_again_at_once() -> None:
    async def main() -> None:
        async with Hub() as hub:
            a, b = Recorder(), Recorder()
            await hub.subscribe(a, "t")
            await hub.subscribe(a, "u")
            hub.unsubscribe(a, "none")  # nothing to do
            hub.unsubscribe(b, "t")
            hub.unsubscribe(a, "t")
            await hub.subscribe(b, "t")  # back before the leave ran: the topic stays joined
            await asyncio.sleep(0)
            await hub.publish("t", "x")
            await hub.publish("u", "y")
            assert [f.message for f in a.frames] == ["y"] and [f.message for f in b.frames] == ["x"]

    run(main())


class Closable(Recorder):
    """A subscriber whose close the test decides: it calls the hub's close callbacks as a transport would."""

    def __init__(self) -> None:
        super().__init__()
        self.callbacks: list[Callable[[Any], object]] = []

    def add_close_callback(self, callback: Callable[[Any], object]) -> None:
        self.callbacks.append(callback)

    def closed(self) -> None:
        for callback in self.callbacks:
            callback(self)


def test_a_connection_that_closes_after_the_hub_or_its_loop_is_gone() -> None:
    after_close, after_loop = Closable(), Closable()

    async def main() -> None:
        hub = Hub()
        await hub.start()
        await hub.subscribe(after_close, "t")
        await hub.close()
        other = Hub()
        await other.start()
        await other.subscribe(after_loop, "t")  # and never closed

    run(main())
    after_close.closed()  # the hub is closed: nothing to do
    after_loop.closed()  # the hub's loop is closed: nothing to do, no error


def test_sync_hub_unsubscribe_and_close_twice() -> None:
    hub = SyncHub()
    hub.start()
    recorder = Recorder()
    hub.subscribe(recorder, "t")
    hub.unsubscribe(recorder, "t")
    assert not hub.subscribers("t")
    hub.close()
    hub.close()
