"""The soak: many clients echo many messages of random sizes, while others misbehave; nothing may be lost.

    python benchmarks/soak.py [--clients 1000] [--messages 1000] [--processes 4] [--servers wsstack,wsstack-sync]
                              [--seed 1] [--max-size 262144]

Each server (``wsstack``: ``wsstack.asyncio``; ``wsstack-sync``: the
threaded ``wsstack.sync`` server, its thread stacks at 256 KiB as in
many_connections.py) runs in its own process, echoing every message with
its library's ``recv()``/``send()`` loop, logging at INFO to its stderr,
``ResourceWarning`` on and routed to the log. It gets two rounds, one after
the other; in each, ``--processes`` client processes (one process
saturates long before 1,000 x 1,000 does) share ``--clients`` connections
of wsstack's asyncio client, half of them with permessage-deflate. Each
connection sends ``--messages`` messages, text or binary at random, at most
four in flight, and checks every echo against what it meant to send: type,
length and CRC-32, computed by the sender from its own bytes (not from
anything its client library produced), compared in sending order, so a
message lost, changed or reordered on either side is a failure and a bug
in the client cannot hide one in the server. Then it closes with a random
valid code (RFC 6455 section 7.4 and the IANA registry) and a reason, and
must get both back in the server's close frame.

Sizes are log-uniform from 0 B to ``--max-size`` (256 KiB): ``2**u - 1``
bytes with ``u`` uniform, so each power of two is as likely as the next
(1 in 18 messages is 0 B, a third are under 64 B, a ninth over 64 KiB) and
the mean is 20.5 KiB. Uniform sizes would make nearly every message a large
one and cost 131 GB a round at 1,000 x 1,000; log-uniform keeps the small
messages, where per-message costs live, as common as the large ones, where
copying and compression do. Binary payloads are cut from a pool half random
(incompressible) and half drawn from 16 byte values (compressible); text
from a pool of 1- to 4-byte UTF-8 characters, cut at character boundaries.

Meanwhile, in every client process, on raw sockets (not wsstack's client):

* vanishing clients (``clients // 20``, at least 4), in four waves at 20%,
  40%, 60% and 80% of the round's messages: each sends one message, then
  the head and half the payload of a second, then closes its socket, half
  of them with a reset (``SO_LINGER`` 0) and half with a FIN;
* clients that stop reading (``clients // 100``, at least 2), from 10% of
  the round to its end: tiny socket buffers, then 256 frames of 256 KiB
  (64 MiB) offered and nothing read; the server must stop reading them (its
  ``write_limit`` and ``max_queue`` apply) and serve everyone else; they
  are reset when the round's other clients are done;
* a burst of new connections (``clients // 5``, at least 10) at 50%, all at
  once: each echoes one message and closes with a random code, checked as
  above.

Checks, each printed PASS or FAIL:

1. every message of every well-behaved client (the burst's included) came
   back intact and in order, and every close came back with its code and
   reason;
2. the server stopped reading from the clients that stopped reading;
3. after each round the server is back to the control connection alone,
   with the asyncio tasks (or, for the threaded server, the OS threads) it
   had before the first, within 10 s of the clients' end;
4. the server's VmRSS after the second round (and any later one:
   ``--rounds``), read after ``gc.collect()`` and ``malloc_trim(0)``, is no
   higher than after the first plus ``RSS_TOLERANCE_KIB``, 8 MiB: the
   spread measured between rounds of the threaded server, whose handler
   threads each get a glibc arena; over five rounds of the short form its
   VmRSS after a round went up and down between 37.5 and 41.6 MiB, with no
   trend (33.7 to 40.8 MiB with glibc's thread-stack cache off), while the
   asyncio server's stayed within 0.5 MiB;
5. no unexpected line on the server's stderr: anything but DEBUG or INFO
   log records (a WARNING, an ERROR, a traceback, a warning) fails.

The summary table has, per server: messages and payload bytes checked
(each way; the vanishing and stopped clients' bytes not counted), seconds
and MB/s per round, and the VmRSS before the first round and after each.
The exit status is 0 only when every check of every server passed.
tests/e2e/test_soak.py runs the same code in a short form in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import logging
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from echo_e2e import cpu_seconds, free_port, masked_frame, rss_kib
from echo_servers import recv_send_echo, sync_recv_send_echo
from many_connections import HANDSHAKE, SYNC_STACK, control_call, open_control, raise_nofile

SERVERS = ("wsstack", "wsstack-sync")
MAX_SIZE = 256 << 10
#: Close codes a peer may send (RFC 6455 section 7.4, the IANA registry).
CLOSE_CODES = (*range(1000, 1004), *range(1007, 1015), *range(3000, 5000))
#: Messages a well-behaved client has sent and not yet seen come back.
WINDOW = 4
#: Seconds a client waits for any one echo, close or handshake before it reports a failure. The
#: handshake's and the closing handshake's waits too (the client's ``open_timeout`` and
#: ``close_timeout``, 10 s by default): the soak judges what is lost, not how long a saturated
#: server makes a client wait, which is measured and printed (the slowest opening and closing
#: handshakes); at 1,000 x 1,000 an opening handshake took up to 14.5 s (asyncio server) and a
#: closing one up to 22.5 s (threaded server).
STEP_TIMEOUT = 120.0
#: Seconds the server has, after the clients are done, to be back to what it had before the first round.
SETTLE = 10.0
#: How much higher (KiB) the server's VmRSS may be after a later round than after round 1 (see the docstring).
RSS_TOLERANCE_KIB = 8 << 10
STALL_FRAMES = 256
POOL = 2 * MAX_SIZE


# ------------------------------------------------------------------ messages


def message_size(rng: random.Random, max_size: int) -> int:
    """A log-uniform size from 0 to ``max_size`` bytes (see the module's docstring for why)."""
    return min(max_size, int(2 ** rng.uniform(0.0, math.log2(max_size + 1))) - 1)


class Expected(NamedTuple):
    """What the sender meant to send: the type, the length in bytes (UTF-8 for text) and the CRC-32."""

    text: bool
    length: int
    crc: int

    @classmethod
    def of(cls, text: bool, data: bytes) -> Expected:
        return cls(text, len(data), zlib.crc32(data))


def mismatch(expected: Expected, received: str | bytes | None) -> str | None:
    """Why ``received`` is not the message described by ``expected``; ``None`` when it is."""
    if received is None:
        return "connection closed before the echo"
    text = isinstance(received, str)
    data = received.encode() if isinstance(received, str) else received
    got = Expected.of(text, data)
    if got == expected:
        return None
    return f"expected {expected}, got {got}"


class Payloads:
    """Pools to cut messages from, seeded: binary half random and half compressible, text of 1- to 4-byte chars."""

    def __init__(self, rng: random.Random) -> None:
        half = POOL // 2
        self.binary = rng.randbytes(half) + bytes(rng.choices(range(0, 256, 16), k=half))
        alphabet = (
            "abcdefghij klmnopqrstuvwxyz\n" * 4 + "éüßñøλπжщ" + "€中文字日本語" + "\U0001f600\U0001f680\U00010348"
        )
        text = "".join(rng.choices(alphabet, k=POOL))
        self.text = text.encode()

    def make(self, rng: random.Random, size: int, text: bool) -> tuple[str | bytes, Expected]:
        """A message of about ``size`` bytes (text is cut at character boundaries), and its description."""
        if not text:
            start = rng.randrange(len(self.binary) - size + 1)
            data = self.binary[start : start + size]
            return data, Expected.of(False, data)
        pool = self.text
        start = rng.randrange(len(pool) - size - 8)
        end = start + size
        while pool[start] & 0xC0 == 0x80:
            start += 1
        while pool[end] & 0xC0 == 0x80:
            end += 1
        data = pool[start:end] if end > start else b""
        return data.decode(), Expected.of(True, data)


def close_of(rng: random.Random, name: str) -> tuple[int, str]:
    return rng.choice(CLOSE_CODES), f"{name} bye"


# ------------------------------------------------------------------ the server process (run as --serve NAME PORT)


def server_state(tasks: int) -> str:
    threads = len(os.listdir("/proc/self/task"))
    return json.dumps({"tasks": tasks, "threads": threads})


def control_answer(message: str | bytes, connections: int, tasks: int) -> str:
    """``state``: connections, tasks and threads; ``gc``: collect and trim the heap first.

    ``malloc_trim(0)`` hands the C heap's free pages back to the system, so
    that VmRSS counts what is in use rather than where the round's peak left
    glibc's free lists: without it, VmRSS after a round varied with how the
    last messages happened to fall.
    """
    if message == "gc":
        gc.collect()
        ctypes.CDLL(None).malloc_trim(0)
    state = json.loads(server_state(tasks))
    state["connections"] = connections
    return json.dumps(state)


async def serve_asyncio(port: int) -> None:
    from wsstack.asyncio import Server
    from wsstack.options import Options

    server = Server(Options(enable_compression=True))

    server.get("/")(recv_send_echo)

    @server.get("/control")
    async def control(ctx):  # type: ignore[no-untyped-def]
        ws = await ctx.upgrade_to_websocket(ping_interval=None)
        while (message := await ws.recv()) is not None:
            await ws.send(control_answer(message, len(server.connections), len(asyncio.all_tasks())))

    await server.listen(port, "127.0.0.1", backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()


def serve_sync(port: int) -> None:
    from wsstack.options import Options
    from wsstack.sync import Server

    threading.stack_size(SYNC_STACK)
    server = Server(Options(enable_compression=True))

    server.get("/")(sync_recv_send_echo)

    @server.get("/control")
    def control(ctx: Any) -> None:
        ws = ctx.upgrade_to_websocket(ping_interval=None)
        while (message := ws.recv()) is not None:
            ws.send(control_answer(message, len(server.connections), 0))

    server.listen(port, backlog=4096)
    print("ready", flush=True)
    server.serve_forever()


def serve(name: str, port: int) -> None:
    """The server; its ``/control`` route has no heartbeat, since the coordinator reads it only between rounds."""
    raise_nofile(0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)
    warnings.simplefilter("default", ResourceWarning)
    if name == "wsstack-sync":
        serve_sync(port)
    else:
        asyncio.run(serve_asyncio(port))


# ------------------------------------------------------------------ a client process (run as --client JSON)


@dataclass
class Share:
    """One client process's part of a round."""

    port: int
    tag: int
    clients: int
    messages: int
    vanish: int
    stall: int
    burst: int
    seed: int
    max_size: int


@dataclass
class Tally:
    """What one client process saw; summed over the processes by the coordinator."""

    messages: int = 0
    bytes: int = 0
    failed: int = 0
    #: Failures that were a connection not opened (in ``STEP_TIMEOUT``).
    unopened: int = 0
    closes: int = 0
    burst: int = 0
    vanished: int = 0
    stalled_offered: int = 0
    stalled_taken: int = 0
    #: Seconds from connect() to the open connection, the slowest: of the round's clients, of the burst's.
    slowest_open: float = 0.0
    slowest_burst_open: float = 0.0
    #: Seconds from close() to the TCP connection gone, the slowest.
    slowest_close: float = 0.0
    failures: list[str] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0

    def fail(self, text: str) -> None:
        self.failed += 1
        if len(self.failures) < 10:
            self.failures.append(text)


class ClientProcess:
    def __init__(self, share: Share) -> None:
        self.share = share
        self.url = f"ws://127.0.0.1:{share.port}/"
        self.payloads = Payloads(random.Random(share.seed))
        self.tally = Tally()
        self.sent = 0
        self.running = share.clients
        self.gate = asyncio.Semaphore(64)

    async def echo(self, name: str, rng: random.Random, count: int, deflate: bool, gated: bool) -> None:
        """One well-behaved connection: ``count`` messages, each echo checked in order, then a checked close."""
        from wsstack.asyncio import connect
        from wsstack.options import Options

        options = Options(enable_compression=deflate, open_timeout=STEP_TIMEOUT, close_timeout=STEP_TIMEOUT)
        try:
            if gated:
                async with self.gate:
                    opening = time.perf_counter()
                    ws = await asyncio.wait_for(connect(self.url, options=options, proxy=None), STEP_TIMEOUT)
                    self.tally.slowest_open = max(self.tally.slowest_open, time.perf_counter() - opening)
            else:
                opening = time.perf_counter()
                ws = await asyncio.wait_for(connect(self.url, options=options, proxy=None), STEP_TIMEOUT)
                self.tally.slowest_burst_open = max(self.tally.slowest_burst_open, time.perf_counter() - opening)
        except (OSError, asyncio.TimeoutError) as exc:
            self.tally.unopened += 1
            self.tally.fail(f"{name}: could not connect: {type(exc).__name__}: {exc}")
            return
        if deflate and ws.extensions != ["permessage-deflate"]:
            self.tally.fail(f"{name}: deflate not agreed: {ws.extensions}")
        expected: deque[Expected] = deque()
        room = asyncio.Semaphore(WINDOW)

        async def send() -> None:
            for _ in range(count):
                message, description = self.payloads.make(
                    rng, message_size(rng, self.share.max_size), rng.random() < 0.5
                )
                await room.acquire()
                expected.append(description)
                await ws.send(message)

        def sent(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                self.tally.fail(f"{name}: sending failed: {task.exception()!r}")
                ws.abort()

        sender = asyncio.create_task(send())
        sender.add_done_callback(sent)
        try:
            for index in range(count):
                received = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                meant = expected.popleft()
                wrong = mismatch(meant, received)
                if wrong is not None:
                    if received is None:
                        wrong += f" (close code {ws.close_code} {ws.close_reason!r})"
                    self.tally.fail(f"{name}: message {index}: {wrong}")
                    ws.abort()
                    return
                room.release()
                self.tally.messages += 1
                self.tally.bytes += meant.length
                self.sent += 1
            await sender
            code, reason = close_of(rng, name)
            closing = time.perf_counter()
            await asyncio.wait_for(ws.close(code, reason), STEP_TIMEOUT)
            self.tally.slowest_close = max(self.tally.slowest_close, time.perf_counter() - closing)
            if not ws.core.close_received or (ws.close_code, ws.close_reason) != (code, reason):
                echoed = (ws.close_code, ws.close_reason) if ws.core.close_received else "no close frame"
                self.tally.fail(f"{name}: closed with {(code, reason)}, the server answered {echoed}")
            else:
                self.tally.closes += 1
        except Exception as exc:
            self.tally.fail(f"{name}: {type(exc).__name__}: {exc}")
            ws.abort()
        finally:
            sender.cancel()

    async def connected(self, sndbuf: int = 0, rcvbuf: int = 0) -> socket.socket:
        """A raw socket through the opening handshake (no compression offered)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await loop.sock_connect(sock, ("127.0.0.1", self.share.port))
        await loop.sock_sendall(sock, HANDSHAKE.format(path="/").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = await loop.sock_recv(sock, 4096)
            if not data:
                raise ConnectionError(f"closed in the handshake after {head!r}")
            head += data
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"refused: {head[:60]!r}")
        return sock

    async def vanish(self, rng: random.Random, reset: bool) -> None:
        """Echo one message, then send half of a frame and go: a reset, or a FIN."""
        loop = asyncio.get_running_loop()
        sock = await asyncio.wait_for(self.connected(), STEP_TIMEOUT)
        try:
            await loop.sock_sendall(sock, masked_frame(b"before vanishing"))
            echo = b""
            while len(echo) < 18:
                echo += await asyncio.wait_for(loop.sock_recv(sock, 64), STEP_TIMEOUT)
            frame = masked_frame(rng.randbytes(rng.randrange(1024, self.share.max_size + 1024)))
            await loop.sock_sendall(sock, frame[: len(frame) // 2])
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        finally:
            sock.close()
        self.tally.vanished += 1

    async def stall(self, done: asyncio.Event) -> None:
        """Offer 64 MiB and read nothing until the round's other clients are done; then reset."""
        loop = asyncio.get_running_loop()
        sock = await asyncio.wait_for(self.connected(sndbuf=65536, rcvbuf=4096), STEP_TIMEOUT)
        frame = masked_frame(bytes(range(256)) * (MAX_SIZE // 256))

        async def offer() -> None:
            for _ in range(STALL_FRAMES):
                await loop.sock_sendall(sock, frame)
                self.tally.stalled_taken += len(frame)

        self.tally.stalled_offered += STALL_FRAMES * len(frame)
        sending = asyncio.create_task(offer())
        try:
            await done.wait()
        finally:
            sending.cancel()
            try:
                await sending
            except (asyncio.CancelledError, OSError):
                pass
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()

    async def reached(self, fraction: float) -> None:
        total = self.share.clients * self.share.messages
        while self.sent < fraction * total and self.running:
            await asyncio.sleep(0.05)

    async def misbehave(self, done: asyncio.Event) -> None:
        """The misbehaving clients of this process, each let loose when the round is that far along."""
        share = self.share
        rng = random.Random(share.seed + 1)
        vanishing = list(split(share.vanish, 4))
        started: list[asyncio.Task[None]] = []
        for at, what in ((0.1, "stall"), (0.2, 0), (0.4, 1), (0.5, "burst"), (0.6, 2), (0.8, 3)):
            await self.reached(at)
            if what == "stall":
                started += [asyncio.create_task(self.stall(done)) for _ in range(share.stall)]
            elif what == "burst":
                started += [
                    asyncio.create_task(
                        self.echo(f"p{share.tag} burst {i}", random.Random(rng.random()), 1, i % 2 == 0, False)
                    )
                    for i in range(share.burst)
                ]
            else:
                started += [asyncio.create_task(self.vanish(rng, i % 2 == 0)) for i in range(vanishing[int(what)])]
        for result in await asyncio.gather(*started, return_exceptions=True):
            if isinstance(result, BaseException):
                self.tally.fail(f"a misbehaving client could not misbehave: {type(result).__name__}: {result}")

    async def run(self) -> Tally:
        share = self.share
        done = asyncio.Event()
        misbehaving = asyncio.create_task(self.misbehave(done))
        self.tally.start = time.perf_counter()

        async def one(index: int) -> None:
            try:
                rng = random.Random(f"{share.seed} {share.tag} {index}")
                await self.echo(f"p{share.tag} client {index}", rng, share.messages, index % 2 == 0, True)
            finally:
                self.running -= 1

        await asyncio.gather(*(one(i) for i in range(share.clients)))
        self.tally.end = time.perf_counter()
        done.set()
        await misbehaving
        self.tally.burst = share.burst
        return self.tally


def run_client(share: Share) -> None:
    raise_nofile(share.clients + share.burst + share.vanish + share.stall + 64)
    tally = asyncio.run(ClientProcess(share).run())
    print(json.dumps(asdict(tally)), flush=True)


# ------------------------------------------------------------------ the coordinator


@dataclass
class Config:
    clients: int = 1000
    messages: int = 1000
    processes: int = 4
    seed: int = 1
    max_size: int = MAX_SIZE
    rounds: int = 2

    @property
    def vanish(self) -> int:
        return max(4, self.clients // 20)

    @property
    def stall(self) -> int:
        return max(2, self.clients // 100)

    @property
    def burst(self) -> int:
        return max(10, self.clients // 5)


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str


@dataclass
class Round:
    messages: int
    bytes: int
    seconds: float
    server_cpu: float
    rss_kib: int


@dataclass
class Result:
    server: str
    rss_before_kib: int = 0
    rounds: list[Round] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {self.server}: {name}: {detail}", flush=True)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)


def split(total: int, parts: int) -> Iterator[int]:
    return (total // parts + (i < total % parts) for i in range(parts))


class ServerProcess:
    """The server under test, its stderr read line by line as it comes, and its control connection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", name, str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.log: list[str] = []
        self.reader = threading.Thread(target=self.read_log, args=(self.proc.stderr,), daemon=True)
        self.reader.start()
        ready = self.proc.stdout.readline().strip()
        if ready != "ready":
            self.stop()
            raise RuntimeError(f"{name} did not start: {ready!r}, log {self.log[-5:]}")
        self.control = open_control(self.port, None)

    def read_log(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line.rstrip("\n"))

    def kinds(self) -> Counter[str]:
        """The log's lines by what they say, numbers left out."""
        return Counter(re.sub(r"[0-9]+", "N", line) for line in self.log)

    def unexpected(self) -> list[str]:
        return [line for line in self.log if not line.startswith(("DEBUG ", "INFO "))]

    def state(self, command: str = "state") -> dict[str, int]:
        return dict(json.loads(control_call(self.control, command)))

    def settled(self, baseline: dict[str, int]) -> dict[str, int]:
        """The server's state once it is back to ``baseline`` (or after ``SETTLE`` seconds, as it is then)."""
        deadline = time.monotonic() + SETTLE
        while True:
            state = self.state("gc")
            if state == baseline or time.monotonic() > deadline:
                return state
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.reader.join(5)


def run_round(server: ServerProcess, config: Config, number: int) -> dict[str, Any]:
    """One round: the client processes from start to end; their tallies summed."""
    shares = zip(
        split(config.clients, config.processes),
        split(config.vanish, config.processes),
        split(config.stall, config.processes),
        split(config.burst, config.processes),
    )
    procs = []
    for tag, (clients, vanish, stall, burst) in enumerate(shares):
        seed = config.seed * 1000 + number * 100 + tag
        share = Share(server.port, tag, clients, config.messages, vanish, stall, burst, seed, config.max_size)
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--client", json.dumps(asdict(share))], stdout=subprocess.PIPE, text=True
            )
        )
    total: dict[str, Any] = {}
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0 or not out.strip():
            tally: dict[str, Any] = asdict(Tally())
            tally["failed"] = 1
            tally["failures"] = [f"a client process ended with status {proc.returncode}"]
        else:
            tally = json.loads(out.splitlines()[-1])
        for key, value in tally.items():
            if key == "start":
                total[key] = min(total.get(key, value), value)
            elif key == "end" or key.startswith("slowest"):
                total[key] = max(total.get(key, value), value)
            else:
                total[key] = total.get(key, 0 if isinstance(value, int) else []) + value
    return total


def soak(name: str, config: Config) -> Result:
    """Two rounds against one server process; the checks of the module's docstring, each printed."""
    result = Result(name)
    server = ServerProcess(name)
    try:
        baseline = server.settled(server.state("gc"))
        result.rss_before_kib = rss_kib(server.proc.pid)
        print(f"{name}: started, {baseline}, VmRSS {result.rss_before_kib / 1024:.1f} MiB", flush=True)
        wanted = config.clients * config.messages + config.burst
        for number in range(1, config.rounds + 1):
            cpu = cpu_seconds(server.proc.pid)
            tally = run_round(server, config, number)
            seconds = tally["end"] - tally["start"]
            cpu = cpu_seconds(server.proc.pid) - cpu
            state = server.settled(baseline)
            rss = rss_kib(server.proc.pid)
            result.rounds.append(Round(tally["messages"], tally["bytes"], seconds, cpu, rss))
            print(
                f"{name}: round {number}: {tally['messages']:,} messages, {tally['bytes'] / 1e6:,.0f} MB each way in "
                f"{seconds:.1f} s ({tally['bytes'] / 1e6 / seconds:.1f} MB/s, server CPU {cpu:.1f} s); "
                f"{tally['vanished']} vanished, "
                f"stalled clients: {tally['stalled_taken'] / 2**20:.1f} of {tally['stalled_offered'] / 2**20:.0f} "
                f"MiB taken; slowest opening handshake {tally['slowest_open']:.2f} s, in the burst "
                f"{tally['slowest_burst_open']:.2f} s; slowest closing handshake {tally['slowest_close']:.2f} s; "
                f"then {state}, VmRSS {rss / 1024:.1f} MiB",
                flush=True,
            )
            detail = f"{tally['messages']:,} of {wanted:,} messages, {tally['closes']:,} closes"
            if tally["failures"]:
                detail += f"; {tally['failed']} failures ({tally['unopened']} not opened), e.g. {tally['failures'][:3]}"
            ok = (
                not tally["failed"] and tally["messages"] == wanted and tally["closes"] == config.clients + config.burst
            )
            result.check(f"round {number}: every message intact and in order, every close echoed", ok, detail)
            taken, offered = tally["stalled_taken"], tally["stalled_offered"]
            result.check(
                f"round {number}: the server stopped reading from clients that stopped reading",
                0 < taken < offered,
                f"it took {taken / 2**20:.1f} MiB of the {offered / 2**20:.0f} MiB offered",
            )
            result.check(
                f"round {number}: nothing left behind",
                state == baseline,
                f"{state} after, {baseline} before the first round",
            )
        first, *later = (r.rss_kib for r in result.rounds)
        highest = max(later, default=first)
        result.check(
            "VmRSS after every later round no higher than after round 1",
            highest <= first + RSS_TOLERANCE_KIB,
            f"{first / 1024:.1f} MiB, then {', '.join(f'{rss / 1024:.1f}' for rss in later)} MiB "
            f"({(highest - first) / 1024:+.1f} MiB at most, tolerance {RSS_TOLERANCE_KIB / 1024:.0f} MiB)",
        )
        for line, count in server.kinds().most_common():
            print(f"{name}: logged {count} times: {line}", flush=True)
        alive = server.proc.poll() is None
        unexpected = server.unexpected()
        result.check(
            "no unexpected line in the server's log",
            alive and not unexpected,
            f"{len(server.log)} lines, {len(unexpected)} unexpected{': ' if unexpected else ''}"
            f"{unexpected[:5] if unexpected else ''}{'' if alive else '; the server died'}",
        )
    finally:
        server.stop()
    return result


def report(results: list[Result], config: Config) -> None:
    print(
        f"\n{config.clients:,} clients x {config.messages:,} messages (up to {config.max_size:,} B) a round, "
        f"{config.processes} client processes, seed {config.seed}"
    )
    print("| server | round | messages | MB each way | seconds | MB/s | server CPU s | VmRSS MiB (before: after) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        for number, r in enumerate(result.rounds, 1):
            rss = f"{result.rss_before_kib / 1024:.1f}: {r.rss_kib / 1024:.1f}"
            print(
                f"| {result.server} | {number} | {r.messages:,} | {r.bytes / 1e6:,.0f} | {r.seconds:.1f} | "
                f"{r.bytes / 1e6 / r.seconds:.1f} | {r.server_cpu:.1f} | {rss} |"
            )
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.server}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000, help="well-behaved connections a round")
    parser.add_argument("--messages", type=int, default=1000, help="messages each of them sends a round")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--servers", default=",".join(SERVERS), help="a comma-separated subset")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-size", type=int, default=MAX_SIZE, help="the largest message, in bytes")
    parser.add_argument("--rounds", type=int, default=2, help="rounds on one server (at least 2)")
    args = parser.parse_args(argv)
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: memory is compared round over round")
    config = Config(args.clients, args.messages, args.processes, args.seed, args.max_size, args.rounds)
    results = [soak(name, config) for name in args.servers.split(",")]
    report(results, config)
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--client"]:
        run_client(Share(**json.loads(sys.argv[2])))
    else:
        sys.exit(main())
