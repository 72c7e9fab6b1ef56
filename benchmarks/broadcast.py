"""Broadcast benchmark: one server sends every message to every client, each library its own way.

    python benchmarks/broadcast.py [--size 64] [--rounds 5] [--client-processes 2] [--only NAME ...]

Two loads: 1,000 clients x 100 messages and 100 clients x 1,000 messages.
Servers, each in its own process (this script with ``--serve``):

- ``wsstack``, ``wsstack-uvloop``: ``wsstack.asyncio.broadcast(server.connections, message)``
  on the default event loop and on uvloop (one frame encoded once for all);
- ``picows``, ``picows-uvloop``: a loop of ``transport.send()`` over every
  connected transport, which is how picows broadcasts (it frames the
  message once per connection);
- ``websockets``: ``websockets.asyncio.server.broadcast(server.connections, message)``.

Each server is told on its stdin to send the messages, one call after the
other without returning to the event loop in between (what a call cannot
write at once waits in the transport's buffer). It reports the
CLOCK_MONOTONIC time just before the first call and the time spent inside
the calls. The clients are ``--client-processes`` processes per server,
each with its share of the connections on raw sockets under one epoll
loop: they only count bytes (every message is the same unmasked frame, so
a connection has them all when it has received their total length, and
one byte more is an error) and report the CLOCK_MONOTONIC time at which
their last connection was complete. "until all had all" is the latest of
those times minus the server's start; "server CPU" is the server process's
user plus system time over the round, the writes left to the event loop
included.

Every server holds the connections of a load at once, each with its own
client processes; rounds alternate between the servers and the median is
kept. Ratios are to picows on the same event loop (websockets against
picows on the default loop), turned over so that above 1 is faster or
cheaper than picows.

wsstack skips a connection whose write buffer is over its limit (the slow
receiver rule of ``wsstack.session.broadcast``); picows and websockets have
no such rule, so the wsstack servers raise ``write_limit`` to 16 MiB here,
and every call must reach every connection (the run stops otherwise). No
server compresses or pings. Nothing is pinned: the client processes need
the second CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from echo_e2e import cpu_seconds, free_port, open_ws
from many_connections import raise_nofile

SERVERS = ("wsstack", "picows", "websockets", "wsstack-uvloop", "picows-uvloop")
ANCHOR = {"wsstack": "picows", "websockets": "picows", "wsstack-uvloop": "picows-uvloop"}
LOADS = ((1000, 100), (100, 1000))
TIMEOUT = 60.0

#: Send this many messages to every connection; the seconds spent in the calls and the fewest connections one reached.
SendAll = Callable[[int], tuple[float, int]]


# ------------------------------------------------------------------ servers (run as --serve IMPL PORT SIZE)


def on_command(send_all: SendAll, count: Callable[[], int]) -> None:
    """Answer one command of the coordinator's on stdin: ``count`` (clients connected) or ``go N`` (send N)."""
    line = sys.stdin.readline().split()
    if not line:
        os._exit(0)  # the coordinator is gone
    if line[0] == "count":
        print(count(), flush=True)
        return
    started = time.monotonic()
    spent, reached = send_all(int(line[1]))
    print(f"{started} {spent} {reached}", flush=True)


def timed(call: Callable[[], int], messages: int) -> tuple[float, int]:
    """Make ``call`` ``messages`` times: the seconds spent in it and the fewest connections it reached."""
    spent, reached = 0.0, sys.maxsize
    for _ in range(messages):
        start = time.perf_counter()
        reached = min(reached, call())
        spent += time.perf_counter() - start
    return spent, reached


def listen_to_commands(send_all: SendAll, count: Callable[[], int]) -> None:
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), on_command, send_all, count)
    print("ready", flush=True)


async def serve_wsstack(port: int, message: bytes) -> None:
    from wsstack.asyncio import Server, broadcast
    from wsstack.options import Options

    server = Server(Options(ping_interval=None, write_limit=16 << 20))

    @server.get("/")
    async def hold(ctx):  # type: ignore[no-untyped-def]
        ws = await ctx.upgrade_to_websocket()
        await ws.wait_closed()

    def send_all(messages: int) -> tuple[float, int]:
        connections = server.connections
        return timed(lambda: broadcast(connections, message), messages)

    await server.listen(port, "127.0.0.1", backlog=4096)
    listen_to_commands(send_all, lambda: len(server.connections))
    await asyncio.Event().wait()


async def serve_picows(port: int, message: bytes) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    transports: set[Any] = set()

    class Held(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport):  # type: ignore[no-untyped-def]
            transports.add(transport)

        def on_ws_disconnected(self, transport):  # type: ignore[no-untyped-def]
            transports.discard(transport)

    def send_one() -> int:
        for transport in transports:
            transport.send(WSMsgType.BINARY, message)
        return len(transports)

    server = await ws_create_server(lambda request: Held(), "127.0.0.1", port, backlog=4096)
    listen_to_commands(lambda messages: timed(send_one, messages), lambda: len(transports))
    async with server:
        await asyncio.Event().wait()


async def serve_websockets(port: int, message: bytes) -> None:
    from websockets.asyncio.server import broadcast, serve

    async def hold(ws):  # type: ignore[no-untyped-def]
        await ws.wait_closed()

    async with serve(hold, "127.0.0.1", port, compression=None, ping_interval=None, backlog=4096) as server:

        def send_one() -> int:
            connections = server.connections
            broadcast(connections, message)
            return len(connections)

        listen_to_commands(lambda messages: timed(send_one, messages), lambda: len(server.connections))
        await asyncio.Event().wait()


def serve(impl: str, port: int, size: int) -> None:
    raise_nofile(0)
    message = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    library = impl.removesuffix("-uvloop")
    main = {"wsstack": serve_wsstack, "picows": serve_picows, "websockets": serve_websockets}[library](port, message)
    if impl.endswith("-uvloop"):
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)


# ------------------------------------------------------------------ client processes (run as --client ...)


def frame_length(size: int) -> int:
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


def run_clients(port: int, connections: int, per_round: int) -> None:
    """Open the connections, then report when each round's ``per_round`` bytes are in on every one."""
    raise_nofile(connections + 64)
    selector = selectors.DefaultSelector()
    got: dict[int, int] = {}
    socks = []
    for _ in range(connections):
        sock = open_ws(port)  # a blocking handshake; nothing more comes before the first round
        sock.setblocking(False)
        socks.append(sock)
        got[sock.fileno()] = 0
        selector.register(sock, selectors.EVENT_READ, sock.fileno())
    print("ready", flush=True)
    buf = bytearray(1 << 20)
    target = 0
    while True:
        target += per_round
        pending = connections
        deadline = time.monotonic() + TIMEOUT
        while pending:
            events = selector.select(1.0)
            if not events and time.monotonic() > deadline:
                short = sum(1 for n in got.values() if n < target)
                print(f"timeout {short} connections short", flush=True)
                return
            for key, _ in events:
                fd = key.data
                n = key.fileobj.recv_into(buf)  # type: ignore[union-attr]
                if not n:
                    print("closed by the server", flush=True)
                    return
                total = got[fd] = got[fd] + n
                if total >= target:
                    if total > target:
                        print(f"error: {total - target} bytes more than sent", flush=True)
                        return
                    pending -= 1
        print(f"done {time.monotonic()}", flush=True)


# ------------------------------------------------------------------ coordinator


class Setup:
    """One server process holding one load's connections, with its client processes."""

    def __init__(self, impl: str, size: int, clients: int, messages: int, processes: int) -> None:
        self.impl, self.clients, self.messages = impl, clients, messages
        port = free_port()
        script = [sys.executable, __file__]
        self.server = subprocess.Popen(
            [*script, "--serve", impl, str(port), str(size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.expect(self.server, "ready")
        per_round = messages * frame_length(size)
        shares = [clients // processes + (i < clients % processes) for i in range(processes)]
        self.loads = [
            subprocess.Popen(
                [*script, "--client", str(port), str(share), str(per_round)], stdout=subprocess.PIPE, text=True
            )
            for share in shares
            if share
        ]
        for load in self.loads:
            self.expect(load, "ready")
        if int(self.ask("count")) != clients:
            raise SystemExit(f"{impl}: not every client is connected")

    @staticmethod
    def expect(proc: subprocess.Popen[str], word: str) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith(word):
            raise SystemExit(f"expected {word!r}, got {line!r}")
        return line

    def ask(self, command: str) -> str:
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.write(command + "\n")
        self.server.stdin.flush()
        return self.server.stdout.readline().strip()

    def round(self) -> dict[str, float]:
        cpu_before = cpu_seconds(self.server.pid)
        started, spent, reached = self.ask(f"go {self.messages}").split()
        if int(reached) != self.clients:
            raise SystemExit(f"{self.impl}: a call reached {reached} of {self.clients} connections")
        done = max(float(self.expect(load, "done").split()[1]) for load in self.loads)
        return {
            "until all had all, ms": (done - float(started)) * 1e3,
            "in the calls, ms": float(spent) * 1e3,
            "server CPU, ms": (cpu_seconds(self.server.pid) - cpu_before) * 1e3,
        }

    def stop(self) -> None:
        for proc in (self.server, *self.loads):
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (64)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--only", action="append", help="measure only this server (repeatable)")
    parser.add_argument("--serve", nargs=3, metavar=("IMPL", "PORT", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, metavar=("PORT", "CONNECTIONS", "BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        impl, port, size = args.serve
        serve(impl, int(port), int(size))
        return
    if args.client:
        port, connections, per_round = map(int, args.client)
        run_clients(port, connections, per_round)
        return

    raise_nofile(64)
    servers = tuple(s for s in SERVERS if not args.only or s in args.only)
    results: dict[tuple[int, int, str], list[dict[str, float]]] = {}
    for clients, messages in LOADS:
        setups = [Setup(impl, args.size, clients, messages, args.client_processes) for impl in servers]
        try:
            for _ in range(args.rounds):
                for setup in setups:
                    results.setdefault((clients, messages, setup.impl), []).append(setup.round())
        finally:
            for setup in setups:
                setup.stop()

    print(f"{args.size} B binary messages, {args.client_processes} client processes per server, unpinned")
    print(
        f"medians of {args.rounds} rounds; in brackets: picows's figure on the same loop / this one (above 1: faster)"
    )
    print(f"| load | figure | {' | '.join(servers)} |")
    print("| --- | --- |" + " ---: |" * len(servers))
    for clients, messages in LOADS:
        fields = results[(clients, messages, servers[0])][0]
        for field in fields:
            medians = {s: statistics.median(r[field] for r in results[(clients, messages, s)]) for s in servers}
            cells = []
            for server in servers:
                text = f"{medians[server]:,.1f}"
                anchor = ANCHOR.get(server)
                if anchor in medians:
                    text += f" ({medians[anchor] / medians[server]:.2f}x)"
                cells.append(text)
            print(f"| {clients:,} clients x {messages:,} msgs | {field} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
