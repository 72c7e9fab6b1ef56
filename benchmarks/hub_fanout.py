"""Fan-out across processes: the hub's backends beside broadcaster's Redis backend under websockets.

    python benchmarks/hub_fanout.py [--subscribers 1000] [--seconds 5] [--window 8] [--only NAME ...]

One run measures, for the same load:

- ``memory``: the hub's in-memory backend in one server process (no Redis: the ceiling);
- ``redis-pubsub`` and ``redis-streams``: the hub over Redis in two server processes;
- ``broadcaster``: encode/broadcaster's Redis backend (``broadcaster==0.3.1``, the ``bench`` extra)
  under a websockets server, two processes: the anchor.

The benchmark starts its own redis-server on a free loopback port. The load
is one separate process of wsstack clients (the same for every server):
``--subscribers`` connections spread evenly over the server processes, and
one publisher connection on the first, whose every message the server
publishes to the topic. The publisher keeps ``--window`` messages in
flight: a message counts as done when every subscriber got it, or after
2 s (a subscriber that fell behind may be skipped: the hub's rule; those
deliveries are reported as missed). It prints messages delivered per second
(deliveries to subscribers over the time from the first publish to the last
delivery), the p50 and p99 publish-to-delivery latency over every delivery,
and the ratios of the hub over Redis pub/sub to broadcaster.

All servers run on the default asyncio event loop, without compression or
heartbeat. The machine is shared: run it when nothing else is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
TOPIC = "bench"
DONE_AFTER = 2.0  # seconds after which a message counts as done even if some subscriber missed it
SETUPS = {
    # name: (server kind, server processes)
    "memory": ("memory", 1),
    "redis-pubsub": ("pubsub", 2),
    "redis-streams": ("streams", 2),
    "broadcaster": ("broadcaster", 2),
}


# ----------------------------------------------------------------- servers


async def serve_hub(kind: str, redis_url: str) -> None:
    from wsstack.asyncio import Context, Server
    from wsstack.hub import Backend, Hub, MemoryBackend
    from wsstack.options import Options

    backend: Backend
    if kind == "memory":
        backend = MemoryBackend()
    elif kind == "pubsub":
        from wsstack.hub.redis_pubsub import RedisPubSubBackend

        backend = RedisPubSubBackend(redis_url)
    else:
        from wsstack.hub.redis_streams import RedisStreamsBackend

        backend = RedisStreamsBackend(redis_url)
    hub = Hub(backend)
    await hub.start()
    server = Server(Options(ping_interval=None))

    @server.get("/sub")
    async def sub(ctx: Context) -> None:
        ws = await ctx.upgrade_to_websocket()
        await hub.subscribe(ws, TOPIC)
        await ws.send("!ready")
        await ws.wait_closed()

    @server.get("/pub")
    async def pub(ctx: Context) -> None:
        ws = await ctx.upgrade_to_websocket()
        async for message in ws:
            await hub.publish(TOPIC, message)

    await server.listen(0, "127.0.0.1", backlog=4096)
    print("ready", server.port, flush=True)
    await asyncio.Event().wait()


async def serve_broadcaster(redis_url: str) -> None:
    """websockets and broadcaster as their docs show them, with one subscriber held from the start.

    That first subscriber works around two races in broadcaster 0.3.1 that
    otherwise lose every message or most subscribers: its Redis listener
    wakes on the first SUBSCRIBE, but redis-py 8 records the channel only
    after sending it, so the listener finds no subscription, stops, and is
    never woken again (it is woken once more below, once the channel is
    recorded); and subscribers that join a channel at the same time each
    replace its set of queues instead of joining it (later ones join the
    held subscriber's set). The held subscriber's queue is drained, at the
    cost of one more queue per process.
    """
    from broadcaster import Broadcast
    from websockets.asyncio.server import ServerConnection, serve

    broadcast = Broadcast(redis_url)
    await broadcast.connect()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/pub":
            async for message in ws:
                await broadcast.publish(channel=TOPIC, message=message)
            return
        async with broadcast.subscribe(channel=TOPIC) as subscriber:
            await ws.send("!ready")
            async for event in subscriber:  # type: ignore[union-attr]
                await ws.send(event.message)

    async with broadcast.subscribe(channel=TOPIC) as held:
        backend: Any = broadcast._backend
        await asyncio.sleep(0.1)
        if backend._pubsub.subscribed and not backend._ready.is_set():
            backend._ready.set()
        drain = asyncio.ensure_future(_drain(held))
        async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, backlog=4096) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print("ready", port, flush=True)
            await asyncio.Event().wait()
        drain.cancel()


async def _drain(subscriber: Any) -> None:
    async for _ in subscriber:
        pass


# -------------------------------------------------------------------- load


async def load(urls: list[str], subscribers: int, seconds: float, window: int) -> dict[str, Any]:
    from wsstack.asyncio import connect

    latencies: list[int] = []
    counts: dict[int, int] = {}
    slots = asyncio.Semaphore(window)
    done: set[int] = set()
    last_delivery = 0

    def finish(number: int) -> None:
        if number not in done:
            done.add(number)
            slots.release()

    def on_message(message: Any) -> None:
        nonlocal last_delivery
        now = time.perf_counter_ns()
        number, _, sent = message.partition(" ")
        number = int(number)
        latencies.append(now - int(sent))
        last_delivery = now
        count = counts[number] = counts.get(number, 0) + 1
        if count == subscribers:
            finish(number)

    async def subscriber(url: str) -> Any:
        ws = await connect(url + "/sub")
        assert await ws.recv() == "!ready"
        ws.set_message_handler(on_message)
        return ws

    clients = []
    for start in range(0, subscribers, 100):  # in batches: a thousand handshakes at once overflow a backlog
        batch = [subscriber(urls[i % len(urls)]) for i in range(start, min(subscribers, start + 100))]
        clients += await asyncio.gather(*batch)
    publisher = await connect(urls[0] + "/pub")
    loop = asyncio.get_running_loop()
    began = time.perf_counter_ns()
    deadline = time.monotonic() + seconds
    published = 0
    while time.monotonic() < deadline:
        await slots.acquire()
        number = published
        published += 1
        await publisher.send(f"{number} {time.perf_counter_ns()}")
        loop.call_later(DONE_AFTER, finish, number)
    for _ in range(window):  # the last ones delivered (or given up on)
        await slots.acquire()
    elapsed = (last_delivery - began) / 1e9
    await publisher.close()
    for ws in clients:
        await ws.close()
    latencies.sort()
    deliveries = len(latencies)
    return {
        "published": published,
        "deliveries": deliveries,
        "missed": published * subscribers - deliveries,
        "delivered_per_s": deliveries / elapsed if elapsed > 0 else 0.0,
        "p50_ms": latencies[deliveries // 2] / 1e6 if deliveries else float("nan"),
        "p99_ms": latencies[min(deliveries - 1, deliveries * 99 // 100)] / 1e6 if deliveries else float("nan"),
    }


# ------------------------------------------------------------ orchestration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = os.environ.get("WSSTACK_REDIS_SERVER", "redis-server")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)


def start_server(kind: str, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, str(HERE), "serve", kind, redis_url], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("ready "):
        proc.kill()
        raise RuntimeError(f"the {kind} server did not start: {line!r}")
    return proc, f"ws://127.0.0.1:{line.split()[1]}"


def measure(name: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    kind, processes = SETUPS[name]
    servers = [start_server(kind, redis_url) for _ in range(processes)]
    try:
        command = [sys.executable, str(HERE), "load", json.dumps([url for _, url in servers])]
        command += [str(args.subscribers), str(args.seconds), str(args.window)]
        out = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120, check=True)
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        for proc, _ in servers:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=8, help="messages in flight")
    parser.add_argument("--only", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    args = parser.parse_args()
    redis, redis_url = start_redis()
    try:
        results = {}
        for name in args.only:
            results[name] = measure(name, redis_url, args)
            print(f"  measured {name}", file=sys.stderr, flush=True)
    finally:
        redis.kill()
        redis.wait()
    print(f"\nfan-out to {args.subscribers} subscribers, {args.window} messages in flight, {args.seconds:g} s each\n")
    print(f"{'setup':<16}{'procs':>6}{'delivered/s':>14}{'p50 ms':>9}{'p99 ms':>9}{'published':>11}{'missed':>9}")
    for name, r in results.items():
        print(
            f"{name:<16}{SETUPS[name][1]:>6}{r['delivered_per_s']:>14,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['published']:>11}{r['missed']:>9}"
        )
    anchor, ours = results.get("broadcaster"), results.get("redis-pubsub")
    if anchor and ours and anchor["delivered_per_s"]:
        rate = ours["delivered_per_s"] / anchor["delivered_per_s"]
        p99 = ours["p99_ms"] / anchor["p99_ms"] if anchor["p99_ms"] else float("nan")
        print(f"\nredis-pubsub / broadcaster: {rate:.2f}x the messages/s, p99 {p99:.2f}x (lower is better)")
    streams = results.get("redis-streams")
    if anchor and streams and anchor["delivered_per_s"]:
        print(
            f"redis-streams / broadcaster: {streams['delivered_per_s'] / anchor['delivered_per_s']:.2f}x the messages/s"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        kind, redis_url = sys.argv[2], sys.argv[3]
        asyncio.run(serve_broadcaster(redis_url) if kind == "broadcaster" else serve_hub(kind, redis_url))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        urls = json.loads(sys.argv[2])
        outcome = asyncio.run(load(urls, int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])))
        print(json.dumps(outcome), flush=True)
    else:
        main()
