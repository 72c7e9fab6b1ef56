"""The hub over Redis pub/sub: a real redis-server, real server processes, real clients."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hub_rooms import FAST, Recorder, Worker, joined, recv, run
from redis_server import RedisServer
from wsstack.asyncio import WebSocket
from wsstack.hub import Hub, HubUnavailable
from wsstack.hub.redis_pubsub import RedisPubSubBackend


async def silent(ws: WebSocket, seconds: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def received(ws: WebSocket, quiet: float = 0.3) -> list[Any]:
    """Every message that comes until none has for ``quiet`` seconds."""
    messages = []
    while True:
        try:
            messages.append(await asyncio.wait_for(ws.recv(), quiet))
        except asyncio.TimeoutError:
            return messages


@pytest.mark.parametrize("kind", ["pubsub", "streams"])
def test_every_message_reaches_all_50_clients_of_two_processes_once_in_publish_order(
    redis_server: RedisServer, kind: str
) -> None:
    """25 clients on each of two server processes; each publishes 20 messages; everybody gets all 1,000."""
    workers = [Worker(kind, redis_server.url) for _ in range(2)]
    clients_per_worker, per_client = 25, 20

    async def main() -> None:
        clients = [await joined(w.url) for w in workers for _ in range(clients_per_worker)]
        total = len(clients) * per_client

        async def publish(index: int, ws: WebSocket) -> None:
            for seq in range(per_client):
                await ws.send(f"{index}:{seq}")

        async def receive(ws: WebSocket) -> list[str]:
            return [await recv(ws) for _ in range(total)]

        receiving = [asyncio.ensure_future(receive(ws)) for ws in clients]
        await asyncio.gather(*(publish(i, ws) for i, ws in enumerate(clients)))
        for received in await asyncio.gather(*receiving):
            assert len(received) == total and len(set(received)) == total  # all of them, once each
            by_publisher: dict[str, list[int]] = {}
            for item in received:
                publisher, seq = item.split(":")
                by_publisher.setdefault(publisher, []).append(int(seq))
            assert all(seqs == list(range(per_client)) for seqs in by_publisher.values())
        assert all([await silent(ws, 0.2) for ws in clients[:3]])  # nothing more, nothing twice
        for ws in clients:
            await ws.close()

    try:
        run(main(), 30)
        assert all(w.alive for w in workers)
    finally:
        for w in workers:
            w.stop()


def test_redis_killed_and_restarted_mid_test(redis_server: RedisServer) -> None:
    """No worker crashes; local delivery goes on with a typed error; delivery across workers resumes."""
    workers = [Worker("pubsub", redis_server.url) for _ in range(2)]

    async def main() -> None:
        a, b = await joined(workers[0].url), await joined(workers[0].url)
        c = await joined(workers[1].url)
        await a.send("before")
        assert [await recv(a), await recv(b), await recv(c)] == ["before"] * 3

        redis_server.kill()
        await a.send("while down")
        # The publisher's own process still delivers it, then the hub's error reaches the handler, typed.
        assert await recv(a) == "while down" and await recv(a) == "!unavailable 2"
        assert await recv(b) == "while down"
        assert await silent(c)
        assert all(w.alive for w in workers)
        d = await joined(workers[1].url)  # subscribing works while Redis is away, locally at once

        redis_server.start()  # the same port
        deadline = time.monotonic() + 15
        probe = 0
        while True:  # until both workers are subscribed again and publishing works
            probe += 1
            await c.send(f"probe {probe}")
            if f"probe {probe}" in await received(c) and f"probe {probe}" in await received(a):
                break
            assert time.monotonic() < deadline, "delivery across workers did not resume"
        for ws in (a, b, c, d):
            await received(ws)  # the probes that went only part of the way
        await a.send("after")
        # Once each, and nothing else: no error for a, no leftover probe.
        assert await asyncio.gather(*(received(ws, 1) for ws in (a, b, c, d))) == [["after"]] * 4
        for ws in (a, b, c, d):
            await ws.close()

    try:
        run(main(), 40)
        assert all(w.alive for w in workers)
    finally:
        for w in workers:
            w.stop()


def test_start_with_redis_down_raises_or_retries_as_configured(redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.kill()

    async def main() -> None:
        hub = Hub(RedisPubSubBackend(url))
        started = time.monotonic()
        with pytest.raises(HubUnavailable, match="unreachable after 1 attempts"):
            await hub.start()
        with pytest.raises(HubUnavailable, match="unreachable after 4 attempts"):
            await Hub(RedisPubSubBackend(url, connect_retries=3, backoff=FAST)).start()
        assert time.monotonic() - started < 5

        patient = Hub(RedisPubSubBackend(url, connect_retries=None, backoff=FAST))
        starting = asyncio.ensure_future(patient.start())
        await asyncio.sleep(0.3)
        assert not starting.done()
        redis_server.start()
        await asyncio.wait_for(starting, 10)
        with pytest.raises(NotImplementedError, match="no history"):
            await patient.history("room", 1)
        await patient.close()

    run(main())
    with pytest.raises(ValueError, match="connect_retries"):
        RedisPubSubBackend(url, connect_retries=-1)


def test_one_redis_connection_per_process_for_every_topic_and_unsubscribe_when_the_last_leaves(
    redis_server: RedisServer,
) -> None:
    from hub_rooms import room_server

    async def main() -> None:
        backend = RedisPubSubBackend(redis_server.url)
        hub = Hub(backend)
        await hub.start()
        server = room_server(hub)
        await server.listen(0)
        base = f"ws://127.0.0.1:{server.port}/ws"
        clients = [await joined(f"{base}?topic=t{i % 5}") for i in range(40)]
        for ws in clients:  # all at once: 40 publishes in flight together
            ws.send_nowait(f"hello from {id(ws)}")
        for ws in clients:
            assert len({await recv(ws) for _ in range(8)}) == 8  # the 8 members of its topic, itself included
        redis = redis_server.client()
        names = [c["name"] for c in redis.client_list()]
        # One for the publishes (pipelined), one subscribed: whatever the WebSockets and the topics.
        assert names.count(backend.name) == 2
        assert sorted(ch.decode() for ch in redis.pubsub_channels("wsstack:*")) == [f"wsstack:t{i}" for i in range(5)]
        for i, ws in enumerate(clients):
            if i % 5 == 0:
                await ws.close()
        deadline = time.monotonic() + 10
        while b"wsstack:t0" in redis.pubsub_channels("wsstack:*"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert len(redis.pubsub_channels("wsstack:*")) == 4
        for ws in clients:
            await ws.close()
        await server.close()
        await hub.close()

    run(main())


def test_subscribing_while_redis_is_away_and_messages_no_hub_published(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = RedisPubSubBackend(redis_server.url, backoff=FAST)
        hub, other = Hub(backend), Hub(RedisPubSubBackend(redis_server.url))
        await hub.start()
        await other.start()
        assert backend.connected
        redis_server.kill()
        while backend.connected:
            await asyncio.sleep(0.01)
        late = Recorder()
        await hub.subscribe(late, "late")  # locally at once; on Redis once it is back
        await asyncio.sleep(0.3)  # a few failed reconnections
        redis_server.start()
        deadline = time.monotonic() + 10
        while not late.frames:
            assert time.monotonic() < deadline
            redis_server.client().publish("wsstack:late", b"garbage")  # ignored: no envelope
            try:
                await other.publish("late", "hello")
            except HubUnavailable:
                pass
            await asyncio.sleep(0.1)
        assert {f.message for f in late.frames} == {"hello"}
        await hub.close()
        await hub.close()
        await other.close()

    run(main())
    with pytest.raises(ValueError, match="timeout"):
        RedisPubSubBackend(timeout=0)


def test_sync_hub_start_with_redis_down(redis_server: RedisServer) -> None:
    from wsstack.hub import SyncHub

    url = redis_server.url
    redis_server.kill()
    hub = SyncHub(RedisPubSubBackend(url))
    with pytest.raises(HubUnavailable):
        hub.start()
