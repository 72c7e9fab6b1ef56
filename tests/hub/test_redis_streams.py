"""The hub over Redis Streams: history, replay after a cut connection, a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from hub_rooms import FAST, Recorder, Worker, joined, recv, room_server, run
from redis_server import RedisServer
from wsstack.hub import Hub, HubUnavailable, SyncHub
from wsstack.hub.redis_pubsub import RedisPubSubBackend
from wsstack.hub.redis_streams import RedisStreamsBackend
from wsstack.sync import Context as SyncContext
from wsstack.sync import Server as SyncServer
from wsstack.sync import connect as sync_connect


def test_history_gives_the_last_n_messages_and_maxlen_bounds_the_stream(redis_server: RedisServer) -> None:
    async def main() -> None:
        hub = Hub(RedisStreamsBackend(redis_server.url, maxlen=50))
        await hub.start()
        assert await hub.history("room", 5) == []
        for i in range(1000):
            await hub.publish("room", str(i) if i % 2 else i.to_bytes(2, "big"))
        assert await hub.history("room", 3) == ["997", (998).to_bytes(2, "big"), "999"]
        assert await hub.history("room", 0) == []
        assert redis_server.client().xlen("wsstack:room") < 1000  # trimmed (whole nodes: about maxlen)
        await hub.close()

    run(main())
    with pytest.raises(ValueError, match="maxlen"):
        RedisStreamsBackend(redis_server.url, maxlen=0)


def test_subscribers_get_what_is_published_after_they_join_across_processes(redis_server: RedisServer) -> None:
    workers = [Worker("streams", redis_server.url) for _ in range(2)]

    async def main() -> None:
        a = await joined(workers[0].url)
        b = await joined(workers[1].url)
        other = await joined(workers[1].url + "?topic=other")  # joined while the reader was blocked
        await other.send("o")
        assert await recv(other) == "o"
        for i in range(50):
            await a.send(f"a{i}")
            await b.send(f"b{i}")
        got_a = [await recv(a) for _ in range(100)]
        got_b = [await recv(b) for _ in range(100)]
        for got in (got_a, got_b):
            assert [m for m in got if m[0] == "a"] == [f"a{i}" for i in range(50)]
            assert [m for m in got if m[0] == "b"] == [f"b{i}" for i in range(50)]
        assert got_a == got_b  # one stream, one order
        for ws in (a, b, other):
            await ws.close()

    try:
        run(main())
        assert all(w.alive for w in workers)
    finally:
        for w in workers:
            w.stop()


def test_a_cut_reader_connection_replays_every_entry_once_in_order(redis_server: RedisServer) -> None:
    """CLIENT KILL on one worker's reader while the other keeps publishing: nothing lost, nothing twice."""
    workers = [Worker("streams", redis_server.url) for _ in range(2)]
    redis = redis_server.client()

    def reader_ids() -> list[int]:
        name = f"wsstack-hub-reader-{workers[1].process.pid}"
        return [int(c["id"]) for c in redis.client_list() if c["name"] == name]

    async def main() -> None:
        publisher = await joined(workers[0].url)
        subscriber = await joined(workers[1].url)
        (before,) = reader_ids()
        count = 600

        async def publish() -> None:
            for i in range(count):
                await publisher.send(str(i))
                if i in (100, 300):
                    for reader in reader_ids():
                        redis.client_kill_filter(_id=reader)
                if i % 20 == 0:
                    await asyncio.sleep(0.01)  # spread over the reconnection's backoff

        publishing = asyncio.ensure_future(publish())
        got = [await recv(subscriber) for _ in range(count)]
        await publishing
        assert got == [str(i) for i in range(count)]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(subscriber.recv(), 0.5)
        (after,) = reader_ids()
        assert after != before  # it did reconnect
        await publisher.close()
        await subscriber.close()

    try:
        run(main())
        assert all(w.alive for w in workers)
    finally:
        for w in workers:
            w.stop()


def test_streams_publish_raises_while_redis_is_down_and_reading_resumes(redis_server: RedisServer) -> None:
    async def main() -> None:
        hubs = [Hub(RedisStreamsBackend(redis_server.url, backoff=FAST)) for _ in range(2)]
        servers = []
        for hub in hubs:
            await hub.start()
            server = room_server(hub)
            await server.listen(0)
            servers.append(server)
        a = await joined(f"ws://127.0.0.1:{servers[0].port}/ws")
        b = await joined(f"ws://127.0.0.1:{servers[1].port}/ws")
        redis_server.kill()
        with pytest.raises(HubUnavailable) as raised:
            await hubs[0].publish("room", "down")
        assert raised.value.local_receivers == 1 and await recv(a) == "down"
        with pytest.raises(HubUnavailable, match="history"):
            await hubs[0].history("room", 1)
        redis_server.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                await hubs[0].publish("room", "back")
                break
            except HubUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert await recv(a) == "back" and await recv(b, 15) == "back"
        for ws in (a, b):
            await ws.close()
        for server, hub in zip(servers, hubs):
            await server.close()
            await hub.close()

    run(main(), 40)


def test_sync_hub_carries_messages_between_two_processes_hubs(redis_server: RedisServer) -> None:
    """Two SyncHubs (each its own thread and Redis connections), two blocking servers: one room."""

    def sync_room(hub: SyncHub) -> SyncServer:
        server = SyncServer()

        @server.get("/ws")
        def room(ctx: SyncContext) -> None:
            ws = ctx.upgrade_to_websocket()
            hub.subscribe(ws, "room")
            ws.send("!subscribed")
            for message in ws:
                hub.publish("room", message)

        server.listen(0, "127.0.0.1")
        return server

    for backend in (RedisPubSubBackend, RedisStreamsBackend):
        hubs = [SyncHub(backend(redis_server.url)) for _ in range(2)]
        for hub in hubs:
            hub.start()
        servers = [sync_room(hub) for hub in hubs]
        try:
            with (
                sync_connect(f"ws://127.0.0.1:{servers[0].port}/ws") as a,
                sync_connect(f"ws://127.0.0.1:{servers[1].port}/ws") as b,
            ):
                assert a.recv(5) == "!subscribed" and b.recv(5) == "!subscribed"
                a.send("from a")
                assert a.recv(5) == "from a" and b.recv(5) == "from a"
                b.send(b"from b")
                assert a.recv(5) == b"from b" and b.recv(5) == b"from b"
        finally:
            for server in servers:
                server.shutdown(timeout=5)
            for hub in hubs:
                hub.close()


def test_streams_subscribing_while_redis_is_away_and_entries_no_hub_wrote(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = RedisStreamsBackend(redis_server.url, backoff=FAST)
        hub, other = Hub(backend), Hub(RedisStreamsBackend(redis_server.url))
        await hub.start()
        await other.start()
        assert backend.connected
        await hub.subscribe(Recorder(), "room")  # the reader waits in XREAD: it sees Redis go
        redis_server.kill()
        while backend.connected:
            await asyncio.sleep(0.01)
        late = Recorder()
        await hub.subscribe(late, "late")  # read from the end of the stream once Redis is back
        await asyncio.sleep(0.3)  # a few failed reconnections
        redis_server.start()
        deadline = time.monotonic() + 10
        while not backend.connected:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # the reader resolved where the stream ends
        redis = redis_server.client()
        redis.xadd("wsstack:late", {"m": b"garbage"})  # ignored: no envelope
        redis.xadd("wsstack:late", {"other": b"field"})  # ignored too
        await other.publish("late", "hello")
        while not late.frames:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert [f.message for f in late.frames] == ["hello"]
        hub.unsubscribe(late, "late")
        await asyncio.sleep(0.1)
        await hub.close()
        await hub.close()
        await other.close()

    run(main())
    for kwargs, field in [
        ({"connect_retries": -1}, "connect_retries"),
        ({"timeout": 0}, "timeout"),
        ({"block": 0}, "block"),
    ]:
        with pytest.raises(ValueError, match=field):
            RedisStreamsBackend(**kwargs)  # type: ignore[arg-type]


def test_a_command_redis_refuses_fails_only_its_own_publish(redis_server: RedisServer) -> None:
    """A key of another type under the prefix: that XADD fails with Redis's error; the others in its pipeline go."""
    from redis.exceptions import ResponseError

    redis_server.client().set("wsstack:clash", "a string, not a stream")

    async def main() -> None:
        hub = Hub(RedisStreamsBackend(redis_server.url))
        await hub.start()
        results = await asyncio.gather(
            hub.publish("room", "1"), hub.publish("clash", "2"), hub.publish("room", "3"), return_exceptions=True
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
        assert await hub.history("room", 5) == ["1", "3"]
        await hub.close()

    run(main())
