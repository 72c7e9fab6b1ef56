"""Fan-out across processes: the hub's backends beside broadcaster's Redis backend under websockets.

    python benchmarks/hub_fanout.py [--subscribers 1000] [--seconds 5] [--window 8] [--only NAME ...]

One run measures, for the same load:

- ``memory``: the hub's in-memory backend in one server process (no Redis: the ceiling);
- ``redis-pubsub`` and ``redis-streams``: the hub over Redis in two server processes;
- ``broadcaster``: encode/broadcaster's Redis backend (``broadcaster==0.3.1``, the ``bench`` extra)
  under a websockets server, two processes: the anchor.

The benchmark starts its own redis-server on a free loopback port. The load
is one separate process, the same for every server: ``--subscribers``
plain sockets spread evenly over the server processes, which check and
count the frames they get (``Subscribers`` says why not full clients), and
one publisher, a wsstack client, on the first server, whose every message
the server publishes to the topic. The publisher keeps ``--window`` messages in
flight: a message counts as done when every subscriber got it, or after
2 s (a subscriber that fell behind may be skipped: the hub's rule; those
deliveries are reported as missed). It prints messages delivered per second
(deliveries to subscribers over the time from the first publish to the last
delivery), the p50 and p99 publish-to-delivery latency over every delivery,
the ratios of the hub over Redis pub/sub to broadcaster, and the cores each
process kept busy while the publisher ran (each server, redis-server, the
load) beside the whole machine's: the figures are the machine's when the
machine is near its core count.

All servers run on the default asyncio event loop, without compression or
heartbeat. The machine is shared: run it when nothing else is.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
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


class Tally:
    """What the subscribers received: deliveries per message, every latency, the messages done."""

    def __init__(self, subscribers: int, window: int) -> None:
        self.subscribers = subscribers
        self.latencies: list[int] = []
        self.counts: dict[int, int] = {}
        self.slots = asyncio.Semaphore(window)
        self.done: set[int] = set()
        self.last_delivery = 0

    def finish(self, number: int) -> None:
        if number not in self.done:
            self.done.add(number)
            self.slots.release()


class RawSubscriber:
    """One subscriber as a plain socket: its handshake, then a frame reader that checks every delivery.

    It parses what the servers send here and nothing more: unmasked,
    unfragmented text frames under 126 bytes, ``"!ready"`` and then
    ``"<number> <perf_counter_ns at publish>"``. Each delivery is checked:
    a frame of any other kind, or a number not above the last one this
    subscriber got (a duplicate or a reordering), fails the run.
    """

    def __init__(self, tally: Tally, host: str, port: int) -> None:
        self.tally = tally
        self.sock = socket.create_connection((host, port), timeout=10)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            b"GET /sub HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host.encode(), port, key)
        )
        self.buffer = bytearray(65536)
        self.view = memoryview(self.buffer)
        self.filled = 0
        self.last = -1
        head = self._read_until(b"\r\n\r\n")
        _check_handshake(bytes(head), key)
        if self._read_until(b"\x81\x06!ready") != b"":  # the server subscribed it: nothing else came before
            raise RuntimeError("data before !ready")
        if self.filled:
            raise RuntimeError("data after !ready before anything was published")
        self.sock.setblocking(False)

    def _read_until(self, marker: bytes) -> bytes:
        """What came before ``marker`` (blocking, during setup only); the buffer keeps what came after."""
        while (end := self.buffer.find(marker, 0, self.filled)) < 0:
            count = self.sock.recv_into(self.view[self.filled :])
            if not count:
                raise RuntimeError("the server closed the connection during the handshake")
            self.filled += count
        before = bytes(self.buffer[:end])
        rest = self.filled - end - len(marker)
        self.buffer[:rest] = self.buffer[end + len(marker) : self.filled]
        self.filled = rest
        return before

    def readable(self) -> None:
        """Read what the socket holds and count its frames."""
        try:
            count = self.sock.recv_into(self.view[self.filled :])
        except BlockingIOError:
            return
        if not count:
            raise RuntimeError("a server closed a subscriber's connection")
        size = self.filled + count
        buffer = self.buffer
        tally = self.tally
        now = time.perf_counter_ns()
        start = 0
        while size - start >= 2:
            length = buffer[start + 1]
            if buffer[start] != 0x81 or length > 125:
                raise RuntimeError(f"unexpected frame header {bytes(buffer[start : start + 2])!r}")
            end = start + 2 + length
            if end > size:
                break
            number_text, sent_text = bytes(buffer[start + 2 : end]).split(b" ")
            start = end
            number = int(number_text)
            if number <= self.last:
                raise RuntimeError(f"message {number} after message {self.last}: a duplicate or a reordering")
            self.last = number
            tally.latencies.append(now - int(sent_text))
            count = tally.counts[number] = tally.counts.get(number, 0) + 1
            if count == tally.subscribers:
                tally.finish(number)
        if start:
            tally.last_delivery = now
        rest = size - start
        if start and rest:
            buffer[:rest] = buffer[start:size]
        self.filled = rest

    def close(self) -> None:
        """Send a masked close frame (code 1000), then wait for the server to close TCP."""
        mask = os.urandom(4)
        payload = (1000).to_bytes(2, "big")
        self.sock.setblocking(True)
        self.sock.settimeout(10)
        self.sock.sendall(b"\x88\x82" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while self.sock.recv(4096):
            pass
        self.sock.close()


def _check_handshake(head: bytes, key: bytes) -> None:
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    lines = head.split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    if not lines[0].startswith(b"HTTP/1.1 101") or headers.get(b"sec-websocket-accept") != accept:
        raise RuntimeError(f"handshake refused: {head[:200]!r}")
    if b"sec-websocket-extensions" in headers:
        raise RuntimeError("the server negotiated an extension nobody asked for")


class Subscribers:
    """Every subscriber socket in one epoll set, which the event loop watches as one file descriptor.

    1,000 full client objects made the load process the busiest on the
    machine (0.9 of a core against about 0.5 for each server with the hub
    over pub/sub), so the figures were more the load's than the servers'.
    Plain sockets read here cost less (measured with the hub over pub/sub:
    9.6 us of the load's CPU per delivery with wsstack clients, 6.6 us
    with these), in two ways, the same for every server: ``recv_into`` a buffer of each socket's own (asyncio's
    ``Protocol`` reads with ``recv(262144)``, and allocating those 256 KiB
    for a read of a few frames cost 18.6 us a read against 2.6 us for
    ``recv_into``, on a socketpair with 30 bytes a read); and one event
    loop callback for every socket that is ready at once, instead of one
    callback each.
    """

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.by_fd: dict[int, RawSubscriber] = {}
        self.failure: BaseException | None = None

    def add(self, subscriber: RawSubscriber) -> None:
        fd = subscriber.sock.fileno()
        self.by_fd[fd] = subscriber
        self.epoll.register(fd, select.EPOLLIN)

    def ready(self) -> None:
        """The loop's reader callback: serve every ready socket once (the epoll set is level-triggered)."""
        by_fd = self.by_fd
        try:
            for fd, _ in self.epoll.poll(0):
                by_fd[fd].readable()
        except (RuntimeError, ValueError) as exc:
            self.failure = exc
            for fd in list(by_fd):
                self.epoll.unregister(fd)
            by_fd.clear()
            raise


async def load(urls: list[str], subscribers: int, seconds: float, window: int) -> dict[str, Any]:
    """Subscribe, then publish for ``seconds``; prints ``publishing`` when the measured window starts."""
    from wsstack.asyncio import connect

    loop = asyncio.get_running_loop()
    tally = Tally(subscribers, window)

    subscribers_set = Subscribers()
    for i in range(subscribers):
        host, port = urls[i % len(urls)].removeprefix("ws://").split(":")
        subscribers_set.add(RawSubscriber(tally, host, int(port)))
    loop.add_reader(subscribers_set.epoll.fileno(), subscribers_set.ready)
    publisher = await connect(urls[0] + "/pub")
    print("publishing", flush=True)
    cpu = time.process_time()
    began = time.perf_counter_ns()
    deadline = time.monotonic() + seconds
    published = 0
    while time.monotonic() < deadline:
        await tally.slots.acquire()
        number = published
        published += 1
        await publisher.send(f"{number} {time.perf_counter_ns()}")
        loop.call_later(DONE_AFTER, tally.finish, number)
    for _ in range(window):  # the last ones delivered (or given up on)
        await tally.slots.acquire()
    elapsed = (tally.last_delivery - began) / 1e9
    cpu = time.process_time() - cpu
    if subscribers_set.failure is not None:
        raise RuntimeError(f"a subscriber failed: {subscribers_set.failure}")
    latencies = sorted(tally.latencies)
    deliveries = len(latencies)
    outcome = {
        "published": published,
        "deliveries": deliveries,
        "missed": published * subscribers - deliveries,
        "delivered_per_s": deliveries / elapsed if elapsed > 0 else 0.0,
        "p50_ms": latencies[deliveries // 2] / 1e6 if deliveries else float("nan"),
        "p99_ms": latencies[min(deliveries - 1, deliveries * 99 // 100)] / 1e6 if deliveries else float("nan"),
        "load_cpu": cpu / elapsed if elapsed > 0 else 0.0,
    }
    print(json.dumps(outcome), flush=True)
    await publisher.close()
    loop.remove_reader(subscribers_set.epoll.fileno())
    for subscriber in subscribers_set.by_fd.values():
        subscriber.close()
    return outcome


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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy so far, over all cores (user, system, interrupts, steal)."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def measure(name: str, redis: subprocess.Popen[bytes], redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One setup: its result, and the cores each process kept busy while the publisher ran."""
    kind, processes = SETUPS[name]
    servers = [start_server(kind, redis_url) for _ in range(processes)]
    try:
        command = [sys.executable, str(HERE), "load", json.dumps([url for _, url in servers])]
        command += [str(args.subscribers), str(args.seconds), str(args.window)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as load_proc:
            assert load_proc.stdout is not None
            if load_proc.stdout.readline().strip() != "publishing":
                raise RuntimeError("the load process did not start publishing")
            pids = [proc.pid for proc, _ in servers] + [redis.pid]
            before = [cpu_seconds(pid) for pid in pids]
            busy, began = machine_busy_seconds(), time.perf_counter()
            line = load_proc.stdout.readline()
            elapsed = time.perf_counter() - began
            cpu = [(cpu_seconds(pid) - start) / elapsed for pid, start in zip(pids, before)]
            busy = (machine_busy_seconds() - busy) / elapsed
            load_proc.wait(timeout=60)
        if not line.startswith("{"):
            raise RuntimeError(f"the load process failed: {line!r}")
        result: dict[str, Any] = json.loads(line)
        result.update(servers_cpu=cpu[:-1], redis_cpu=cpu[-1], machine_busy=busy)
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
            results[name] = measure(name, redis, redis_url, args)
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
    print(f"\ncores kept busy while publishing ({os.cpu_count()} CPUs; rest: other processes, interrupts)\n")
    print(f"{'setup':<16}{'servers':>14}{'redis':>7}{'load':>7}{'rest':>7}{'machine':>9}")
    for name, r in results.items():
        servers = " + ".join(f"{c:.2f}" for c in r["servers_cpu"])
        rest = r["machine_busy"] - sum(r["servers_cpu"]) - r["redis_cpu"] - r["load_cpu"]
        print(
            f"{name:<16}{servers:>14}{r['redis_cpu']:>7.2f}{r['load_cpu']:>7.2f}{rest:>7.2f}{r['machine_busy']:>9.2f}"
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
        asyncio.run(load(urls, int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])))
    else:
        main()
