"""Many concurrent connections: open, echo, idle memory, broadcast and close, for each server in one run.

    python benchmarks/many_connections.py [--connections 10000] [--sync-connections 5000] [--clients 4]

Servers, each in its own process and one at a time: ``wsstack`` (asyncio,
ws://), ``wsstack-tls`` (asyncio, wss://, TLS by ``wsstack.asyncio.tls``),
``wsstack-sync`` (the threaded server, ws://), and the anchors
``websockets`` and ``websockets-tls`` (its asyncio server). All run without
compression or heartbeat pings. The asyncio servers get ``--connections``,
the threaded one ``--sync-connections``: each of its connections is a
handler thread, so its process sets ``threading.stack_size`` to 256 KiB
(the echo handler needs far less; the default 8 MiB would reserve 40 GiB of
address space for 5,000 threads).

The clients are ``--clients`` processes of asyncio protocols on raw sockets
that send pre-masked frames and compare what comes back byte for byte, so
they cost the same for every server; wss:// clients do not verify the
certificate (the coordinator's control connection does). Each step is
timed from the coordinator's command to the last client process done:

1. open: every connection does its TCP (and TLS) and WebSocket handshakes,
   at most ``--in-flight`` at a time per client process so that the listen
   backlog never overflows (a dropped SYN would measure the kernel's 1 s
   retry, not the server): handshakes per second, and the server's CPU
   time per handshake (user plus system, all its threads), which a busy
   machine disturbs less than the rate;
2. echo: every connection sends one 16-byte message, all at once, and each
   echo is checked;
3. idle for ``--idle`` seconds, then the server's VmRSS growth over the
   connections, in KiB per connection (VmRSS read after the control
   connection's first echo, before the opening, and after the idle time);
4. broadcast: the control connection asks the server to call its library's
   ``broadcast(server.connections, ...)`` with a 64-byte message; the time
   from that request until every client has the whole frame (clocks are
   CLOCK_MONOTONIC, shared by the processes), and the time the server spent
   in the call; ``--broadcasts`` times (3), medians kept, since one
   broadcast on a shared machine varied 2x between runs;
5. close: every client sends a close frame and waits for the server's
   (closes per second, server CPU time per close); then
   the server must report no connection but the control one within 10 s
   and echo on a new connection.

Every process raises its RLIMIT_NOFILE soft limit to the hard limit; the
run stops at once if the hard limit is too low for the connections asked
for. It prints each step as it goes, pass/fail lines for issue #15's bars
(asyncio: at most 8 KiB per idle ws:// connection and 48 KiB per wss://
one; the threaded server holds 5,000), and a Markdown table with the ratios
to websockets (ws:// and the threaded server against ``websockets``,
wss:// against ``websockets-tls``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from echo_e2e import cpu_seconds, echo_size, free_port, masked_frame, read_exactly, rss_kib
from echo_servers import recv_send_echo, sync_recv_send_echo
from echo_tls import open_wss

SERVERS = ("wsstack", "wsstack-tls", "wsstack-sync", "websockets", "websockets-tls")
#: The server each one is compared with in the table.
ANCHOR = {"wsstack": "websockets", "wsstack-tls": "websockets-tls", "wsstack-sync": "websockets"}
BROADCAST = bytes(range(64))
#: The broadcast as every client must receive it: an unmasked binary frame.
BROADCAST_FRAME = bytes((0x82, len(BROADCAST))) + BROADCAST
#: A masked close frame with code 1000 (a zero masking key leaves the payload as it is).
CLOSE_FRAME = bytes((0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8))
HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: Rows whose ratio is taken per connection: times that grow with the number of connections.
PER_CONNECTION = ("echo s", "broadcast ms", "broadcast call ms")
SYNC_STACK = 256 << 10
TIMEOUT = 120.0


def raise_nofile(needed: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit; SystemExit if even that is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"RLIMIT_NOFILE hard limit is {hard:,}, below the {needed:,} descriptors this run needs: "
            "raise it (ulimit -Hn, LimitNOFILE=) or ask for fewer connections"
        )
    # An unlimited hard limit still stops at the kernel's nr_open: ask for what is needed then.
    target = max(needed, soft) if hard == resource.RLIM_INFINITY else hard
    if soft != target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# ------------------------------------------------------------------ servers (run as --serve IMPL PORT DIR)


def server_context(directory: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    return context


def control_reply(message: str | bytes, connections: Any, broadcast: Callable[[Any, bytes], Any]) -> str:
    """The control connection's answer: ``broadcast`` (receivers, seconds in the call) or ``count``."""
    if message == "broadcast":
        start = time.perf_counter()
        broadcast(connections, BROADCAST)
        elapsed = time.perf_counter() - start
        return f"{len(connections)} {elapsed}"
    return str(len(connections))


async def serve_wsstack(port: int, context: ssl.SSLContext | None) -> None:
    from wsstack.asyncio import Server, broadcast
    from wsstack.options import Options

    server = Server(Options(ping_interval=None))
    server.ssl = context

    server.get("/")(recv_send_echo)

    @server.get("/control")
    async def control(ctx):  # type: ignore[no-untyped-def]
        ws = await ctx.upgrade_to_websocket()
        while (message := await ws.recv()) is not None:
            await ws.send(control_reply(message, server.connections, broadcast))

    await server.listen(port, "127.0.0.1", backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def serve_websockets(port: int, context: ssl.SSLContext | None) -> None:
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    holder: list[Any] = []

    async def handler(ws):  # type: ignore[no-untyped-def]
        control = ws.request.path == "/control"
        try:
            async for message in ws:
                await ws.send(control_reply(message, holder[0].connections, broadcast) if control else message)
        except ConnectionClosed:
            pass

    async with serve(
        handler, "127.0.0.1", port, ssl=context, compression=None, ping_interval=None, backlog=4096
    ) as server:
        holder.append(server)
        print("ready", flush=True)
        await asyncio.Event().wait()


def serve_sync(port: int) -> None:
    import threading

    from wsstack.options import Options
    from wsstack.sync import Server, broadcast

    threading.stack_size(SYNC_STACK)  # every connection is a handler thread
    server = Server(Options(ping_interval=None, ping_timeout=None))

    server.get("/")(sync_recv_send_echo)

    @server.get("/control")
    def control(ctx: Any) -> None:
        ws = ctx.upgrade_to_websocket()
        while (message := ws.recv()) is not None:
            ws.send(control_reply(message, server.connections, broadcast))

    server.listen(port, backlog=4096)
    print("ready", flush=True)
    server.serve_forever()


def serve(impl: str, port: int, directory: Path) -> None:
    raise_nofile(0)
    context = server_context(directory) if impl.endswith("-tls") else None
    if impl == "wsstack-sync":
        serve_sync(port)
    elif impl.startswith("websockets"):
        asyncio.run(serve_websockets(port, context))
    else:
        asyncio.run(serve_wsstack(port, context))


# ------------------------------------------------------------------ client processes (run as --client ...)


class Client(asyncio.Protocol):
    """One connection: bytes pile up in ``buf`` until ``wait()``'s condition holds."""

    def __init__(self, lost: asyncio.Future[None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.lost = lost
        self.waiter: asyncio.Future[None] | None = None
        #: Bytes ``waiter`` waits for; -1: an HTTP head; 0: a close frame (or the end of the connection).
        self.need = 0
        self.done_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._check()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.need == 0:
                waiter.set_result(None)
            else:
                waiter.set_exception(ConnectionError(f"closed with {bytes(self.buf[:60])!r} received"))

    def _check(self) -> None:
        waiter, need, buf = self.waiter, self.need, self.buf
        if waiter is None or waiter.done():
            return
        if (need < 0 and b"\r\n\r\n" in buf) or (need > 0 and len(buf) >= need) or (need == 0 and buf[:1] == b"\x88"):
            self.done_at = time.perf_counter()
            waiter.set_result(None)

    def arm(self, need: int) -> asyncio.Future[None]:
        self.buf.clear()
        self.need = need
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    async def take(self, need: int) -> bytes:
        waiter = self.arm(need)
        self._check()
        await waiter
        data = bytes(self.buf)
        self.buf.clear()
        return data


class ClientProcess:
    """A share of the connections, driven by the coordinator's commands on stdin."""

    def __init__(self, port: int, count: int, tls: bool, in_flight: int, tag: int) -> None:
        self.port, self.count, self.in_flight, self.tag = port, count, in_flight, tag
        self.context: ssl.SSLContext | None = None
        if tls:
            self.context = ssl.create_default_context()
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self.clients: list[Client] = []
        self.handshake = HANDSHAKE.format(path="/").encode()

    async def open_one(self, gate: asyncio.Semaphore) -> Client | str:
        loop = asyncio.get_running_loop()
        async with gate:
            try:
                _, client = await loop.create_connection(
                    lambda: Client(loop.create_future()),
                    "127.0.0.1",
                    self.port,
                    ssl=self.context,
                    server_hostname="localhost" if self.context else None,
                )
                assert client.transport is not None
                client.transport.write(self.handshake)
                head = await client.take(-1)
            except OSError as exc:
                return f"{type(exc).__name__}: {exc}"
        if not head.startswith(b"HTTP/1.1 101") or not head.endswith(b"\r\n\r\n"):
            return f"answer {head[:60]!r}"
        return client

    async def open(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.in_flight)
        start = time.perf_counter()
        results = await asyncio.gather(*(self.open_one(gate) for _ in range(self.count)))
        end = time.perf_counter()
        self.clients = [c for c in results if isinstance(c, Client)]
        errors = [e for e in results if isinstance(e, str)]
        return {"start": start, "end": end, "ok": len(self.clients), "errors": errors[:3], "failed": len(errors)}

    async def echo(self) -> dict[str, Any]:
        payloads = [f"{self.tag:03d}-{i:012d}".encode() for i in range(len(self.clients))]
        frames = [masked_frame(p) for p in payloads]
        start = time.perf_counter()
        waiters = []
        for client, frame, payload in zip(self.clients, frames, payloads):
            waiters.append(client.arm(echo_size(len(payload))))
            assert client.transport is not None
            client.transport.write(frame)
        results = await asyncio.gather(*waiters, return_exceptions=True)
        end = time.perf_counter()
        bad = sum(
            1
            for client, payload, result in zip(self.clients, payloads, results)
            if result is not None or bytes(client.buf) != bytes((0x82, len(payload))) + payload
        )
        return {"start": start, "end": end, "ok": len(self.clients) - bad, "failed": bad}

    def arm_broadcast(self) -> list[asyncio.Future[None]]:
        return [client.arm(len(BROADCAST_FRAME)) for client in self.clients]

    async def broadcast(self, waiters: list[asyncio.Future[None]]) -> dict[str, Any]:
        results = await asyncio.gather(*waiters, return_exceptions=True)
        good = [c for c, r in zip(self.clients, results) if r is None and bytes(c.buf) == BROADCAST_FRAME]
        last = max((c.done_at for c in good), default=0.0)
        return {"end": last, "ok": len(good), "failed": len(self.clients) - len(good)}

    async def close(self) -> dict[str, Any]:
        start = time.perf_counter()
        waiters = []
        for client in self.clients:
            waiters.append(client.arm(0))
            assert client.transport is not None
            client.transport.write(CLOSE_FRAME)
        results = await asyncio.gather(*waiters, return_exceptions=True)
        for client in self.clients:
            assert client.transport is not None
            client.transport.close()
        await asyncio.gather(*(client.lost for client in self.clients))
        end = time.perf_counter()
        bad = sum(1 for r in results if r is not None)
        self.clients = []
        return {"start": start, "end": end, "ok": len(results) - bad, "failed": bad}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        print(json.dumps({"ready": True}), flush=True)
        waiters: list[asyncio.Future[None]] = []
        while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            if command == "open":
                reply = await asyncio.wait_for(self.open(), TIMEOUT)
            elif command == "echo":
                reply = await asyncio.wait_for(self.echo(), TIMEOUT)
            elif command == "arm":
                waiters = self.arm_broadcast()
                reply = {"armed": len(waiters)}
            elif command == "broadcast":
                reply = await asyncio.wait_for(self.broadcast(waiters), TIMEOUT)
            elif command == "close":
                reply = await asyncio.wait_for(self.close(), TIMEOUT)
            else:
                break
            print(json.dumps(reply), flush=True)


def run_client(port: int, count: int, tls: bool, in_flight: int, tag: int) -> None:
    raise_nofile(count + 32)
    asyncio.run(ClientProcess(port, count, tls, in_flight, tag).run())


# ------------------------------------------------------------------ the coordinator


class Clients:
    """The client processes of one server, commanded together."""

    def __init__(self, port: int, total: int, processes: int, tls: bool, in_flight: int) -> None:
        shares = [total // processes + (i < total % processes) for i in range(processes)]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    str(port),
                    str(share),
                    "1" if tls else "0",
                    str(in_flight),
                    str(i),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i, share in enumerate(shares)
        ]
        self.send_all_then_read(None)

    def send(self, command: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()

    def read(self) -> list[dict[str, Any]]:
        replies = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a client process ended (exit status {proc.wait()})")
            replies.append(json.loads(line))
        return replies

    def send_all_then_read(self, command: str | None) -> list[dict[str, Any]]:
        if command is not None:
            self.send(command)
        return self.read()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def step(replies: list[dict[str, Any]]) -> tuple[float, int, int, list[str]]:
    """Seconds from the first process's start to the last one's end; connections ok and failed."""
    seconds = max(r["end"] for r in replies) - min(r["start"] for r in replies)
    errors = [e for r in replies for e in r.get("errors", [])]
    return seconds, sum(r["ok"] for r in replies), sum(r["failed"] for r in replies), errors


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked frame from the server (no payload above 64 KiB comes on the control connection)."""
    head = bytearray(2)
    read_exactly(sock, 2, head)
    length = head[1] & 0x7F
    if length == 126:
        ext = bytearray(2)
        read_exactly(sock, 2, ext)
        length = int.from_bytes(ext, "big")
    payload = bytearray(length)
    read_exactly(sock, length, payload)
    return head[0] & 0x0F, bytes(payload)


def control_call(sock: socket.socket, command: str) -> str:
    """Send a text command; the server's text answer, past the broadcast frame that may come first."""
    data = command.encode()
    frame = masked_frame(data)
    sock.sendall(bytes((0x81,)) + frame[1:])
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x1:
            return payload.decode()
        if payload != BROADCAST:
            raise RuntimeError(f"unexpected frame {opcode} {payload[:40]!r} on the control connection")


def open_control(port: int, context: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(TIMEOUT)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(HANDSHAKE.format(path="/control").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data[:100]
    return sock


def echo_once(port: int, context: ssl.SSLContext | None) -> bool:
    sock = open_wss(port, context)
    try:
        sock.sendall(masked_frame(b"still there?"))
        opcode, payload = read_frame(sock)
        return opcode == 0x2 and payload == b"still there?"
    finally:
        sock.close()


def measure(
    impl: str, count: int, args: argparse.Namespace, directory: Path, context: ssl.SSLContext
) -> dict[str, Any]:
    tls = impl.endswith("-tls")
    ctx = context if tls else None
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", impl, str(port), str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    clients = Clients(port, count, args.clients, tls, args.in_flight)
    result: dict[str, Any] = {"connections": count}
    try:
        control = open_control(port, ctx)
        assert control_call(control, "count") == "1"
        before = rss_kib(server.pid)

        cpu = cpu_seconds(server.pid)
        seconds, ok, failed, errors = step(clients.send_all_then_read("open"))
        result["handshakes/s"] = ok / seconds
        result["opened"] = ok
        result["CPU us/handshake"] = (cpu_seconds(server.pid) - cpu) / max(1, ok) * 1e6
        print(
            f"{impl}: opened {ok:,} of {count:,} in {seconds:.2f} s, {ok / seconds:,.0f} handshakes/s, "
            f"{result['CPU us/handshake']:.0f} us of server CPU each",
            flush=True,
        )
        if failed:
            print(f"  {failed:,} failed to open, e.g. {errors}", flush=True)

        seconds, ok, failed, _ = step(clients.send_all_then_read("echo"))
        result["echo ok"] = ok
        result["echo s"] = seconds
        print(f"  echo: {ok:,} checked, {failed:,} wrong or missing, {seconds * 1000:.0f} ms for all", flush=True)

        time.sleep(args.idle)
        after = rss_kib(server.pid)
        result["KiB/conn"] = (after - before) / max(1, result["opened"])
        print(f"  idle RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB: {result['KiB/conn']:.1f} KiB per connection")

        until_all, in_calls, got = [], [], []
        for _ in range(args.broadcasts):
            clients.send_all_then_read("arm")
            start = time.perf_counter()
            receivers, in_call = control_call(control, "broadcast").split()
            replies = clients.send_all_then_read("broadcast")
            got.append(sum(r["ok"] for r in replies))
            until_all.append((max(r["end"] for r in replies) - start) * 1000)
            in_calls.append(float(in_call) * 1000)
        result["broadcast ms"] = statistics.median(until_all)
        result["broadcast call ms"] = statistics.median(in_calls)
        result["broadcast ok"] = min(got)
        print(
            f"  broadcast to {int(receivers) - 1:,}, {args.broadcasts} times: the fewest who had it {min(got):,}; "
            f"all had it after {result['broadcast ms']:.1f} ms ({result['broadcast call ms']:.1f} ms in the "
            f"server's call), medians; each: {', '.join(f'{t:.1f}' for t in until_all)} ms",
            flush=True,
        )

        cpu = cpu_seconds(server.pid)
        seconds, ok, failed, _ = step(clients.send_all_then_read("close"))
        result["closes/s"] = ok / seconds
        result["CPU us/close"] = (cpu_seconds(server.pid) - cpu) / max(1, ok) * 1e6
        deadline = time.monotonic() + 10
        while (left := int(control_call(control, "count"))) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        result["healthy"] = left == 1 and echo_once(port, ctx) and server.poll() is None
        print(
            f"  closed {ok:,} in {seconds:.2f} s, {result['CPU us/close']:.0f} us of server CPU each "
            f"({failed:,} without the server's close frame); "
            f"{left - 1} left open on the server; healthy: {'yes' if result['healthy'] else 'NO'}",
            flush=True,
        )
        control.close()
    finally:
        clients.stop()
        server.kill()
        server.wait()
    return result


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print("\nissue #15's bars")
    bars = [
        ("wsstack", "KiB/conn", 8.0, "at most 8 KiB per idle ws:// connection (asyncio)"),
        ("wsstack-tls", "KiB/conn", 48.0, "at most 48 KiB per idle wss:// connection (asyncio)"),
    ]
    for impl, key, limit, text in bars:
        if impl in results:
            value = results[impl][key]
            full = results[impl]["opened"] == results[impl]["connections"]
            print(f"{'PASS' if value <= limit and full else 'FAIL'}  {text}: {value:.1f} KiB")
    if "wsstack-sync" in results:
        sync = results["wsstack-sync"]
        held = min(sync["opened"], sync["echo ok"], sync["broadcast ok"])
        ok = held >= 5000 and sync["healthy"]
        print(
            f"{'PASS' if ok else 'FAIL'}  wsstack-sync holds at least 5,000 connections: "
            f"{held:,} of {sync['connections']:,} echoed and got the broadcast"
        )
    for impl, result in results.items():
        whole = min(result["opened"], result["echo ok"], result["broadcast ok"]) == result["connections"]
        if not (whole and result["healthy"]):
            print(f"FAIL  {impl}: not every connection opened, echoed and got the broadcast, or unhealthy after")

    rows = [
        ("connections", "connections", "{:,.0f}", False),
        ("handshakes/s", "handshakes/s", "{:,.0f}", True),
        ("server CPU per handshake, us", "CPU us/handshake", "{:,.0f}", False),
        ("echo to all, ms", "echo s", "{:,.0f}", False),
        ("KiB per idle connection", "KiB/conn", "{:.1f}", False),
        ("broadcast until all had it, ms", "broadcast ms", "{:.1f}", False),
        ("broadcast() call, ms", "broadcast call ms", "{:.1f}", False),
        ("closes/s", "closes/s", "{:,.0f}", True),
        ("server CPU per close, us", "CPU us/close", "{:,.0f}", False),
    ]
    impls = [i for i in SERVERS if i in results]
    print("\nratios: wsstack / its anchor for rates, anchor / wsstack for times and memory (above 1 is better")
    print("for wsstack); times to all connections are compared per connection")
    ours = [i for i in impls if i in ANCHOR and ANCHOR[i] in results]
    print("| | " + " | ".join([*impls, *(f"{i} / {ANCHOR[i]}" for i in ours)]) + " |")
    print("| --- |" + " ---: |" * (len(impls) + len(ours)))
    for label, key, fmt, higher_better in rows:
        values = {i: results[i][key] * (1000 if key == "echo s" else 1) for i in impls}
        cells = [fmt.format(values[i]) for i in impls]
        for i in ours:
            a, b = values[i], values[ANCHOR[i]]
            if key in PER_CONNECTION:  # the threaded server has fewer connections than its anchor
                a, b = a / results[i]["connections"], b / results[ANCHOR[i]]["connections"]
            ratio = (a / b if higher_better else b / a) if a and b else float("nan")
            cells.append("" if key == "connections" else f"{ratio:.2f}x")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n{args.clients} client processes, at most {args.in_flight} handshakes in flight each, idle {args.idle} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000, help="for the asyncio servers")
    parser.add_argument("--sync-connections", type=int, default=5_000, help="for the threaded server")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--in-flight", type=int, default=64, help="handshakes under way at once per client process")
    parser.add_argument("--idle", type=float, default=1.5, help="seconds idle before the memory is read")
    parser.add_argument("--broadcasts", type=int, default=3, help="broadcasts, one after another (medians kept)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="a comma-separated subset")
    args = parser.parse_args()
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    raise_nofile(max(args.connections, args.sync_connections) + 64)

    import trustme

    authority = trustme.CA()
    cert = authority.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context()
    authority.configure_trust(context)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cert.private_key_and_cert_chain_pem.write_to_path(directory / "chain.pem")
        cert.private_key_pem.write_to_path(directory / "key.pem")
        for impl in args.servers.split(","):
            count = args.sync_connections if impl == "wsstack-sync" else args.connections
            results[impl] = measure(impl, count, args, directory, context)
    report(results, args)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    elif sys.argv[1:2] == ["--client"]:
        port, count, tls, in_flight, tag = sys.argv[2:7]
        run_client(int(port), int(count), tls == "1", int(in_flight), int(tag))
    else:
        main()
