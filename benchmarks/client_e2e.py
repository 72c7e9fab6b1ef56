"""End-to-end client benchmark: our clients beside picows's, websockets' and aiohttp's, against one echo server.

    python benchmarks/client_e2e.py [--seconds 1] [--rounds 3] [--cpu 0 | --cpu none] [--only NAME ...]

The server is the same for every client: picows's echo server from
echo_servers.py on uvloop, in its own process. It is the cheapest server
echo_e2e.py measures (Cython, frames echoed from its read buffer without
reassembly, UTF-8 checks or a Python call per message beyond its callback),
and uvloop takes the most off its event loop, so the server's share of each
message is the smallest we have; the table prints its CPU time per message
beside the client's to show it stays below the clients'.

Each measurement runs one client in a process of its own (this script with
``--run``), which connects, warms up for a tenth of the time, then repeats
one of two operations until ``--seconds`` have passed:

- round trips: one message in flight, the next sent when its echo is in;
- pipelined: a batch sent, then every echo read (1,000 messages of 32 B or
  1 KiB, 100 of 64 KiB), batch after batch.

It reports messages per second and its own CPU time (user plus system, all
its threads) per message. Rounds alternate between the clients and the
median is kept; ratios are to picows's client on the same event loop
(turned over for CPU time, so above 1 is better for the other client).

Clients, each on the default event loop and again on uvloop (``-uvloop``):

- ``wsstack``: ``await ws.send()`` and ``await ws.recv()``, the usual loop;
- ``wsstack-handler``: ``ws.set_message_handler()``, replying from the
  handler with ``send_nowait()`` in round trips;
- ``picows``: its ``WSListener.on_ws_frame`` callback, sending the next
  message from the callback in round trips (its fastest way);
- ``websockets`` (``websockets.asyncio.client``) and ``aiohttp``
  (``ClientSession.ws_connect``): ``await`` send and receive.

The threaded clients follow: ``wsstack.sync`` and ``websockets.sync``, each
with blocking ``send()`` and ``recv()``, and ``raw``, echo_e2e.py's
blocking socket that sends pre-masked frames and parses nothing, the
ceiling for any client here.

No client compresses or pings; each accepts 16 MiB messages. By default the
client and the server share CPU 0, as in echo_e2e.py (whose docstring says
why); ``--cpu none`` leaves both to the scheduler. The client's CPU time
per message is comparable either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from echo_e2e import cpu_seconds, pipelined, round_trips, start

HERE = Path(__file__).resolve().parent
SERVER = "picows-uvloop"
ASYNC_CLIENTS = ("wsstack", "wsstack-handler", "picows", "websockets", "aiohttp")
LOOP_CLIENTS = (*ASYNC_CLIENTS, *(f"{name}-uvloop" for name in ASYNC_CLIENTS))
SYNC_CLIENTS = ("wsstack-sync", "websockets-sync", "raw")
SIZES = (32, 1024, 65536)
CASES = tuple((kind, size) for kind in ("round trips", "pipelined") for size in SIZES)
#: Messages in one pipelined batch: 100 of 64 KiB keep 6.4 MiB in flight, enough to fill every buffer.
BATCH = {32: 1000, 1024: 1000, 65536: 100}
#: Round trips between two looks at the clock.
BURST = 50
MAX_SIZE = 16 << 20

#: An operation: run this many round trips, or send and read one batch of this many messages.
Operation = Callable[[int], Awaitable[None]]


def timed(seconds: float, unit: int, result: dict[str, float]) -> Iterator[None]:
    """Yield once per operation of ``unit`` messages: a tenth of ``seconds`` to warm up, then ``seconds`` timed.

    When exhausted, ``result`` holds the rate and CPU time per message of the
    timed part and every message sent (for the server's CPU time per message).
    """
    total = 0
    warm_until = time.perf_counter() + seconds / 10
    while time.perf_counter() < warm_until:
        yield
        total += unit
    count = 0
    cpu_before = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        yield
        count += unit
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    result.update(rate=count / elapsed, cpu_us=cpu / count * 1e6, messages=total + count)


def echo_operations(
    send: Callable[[bytes], Awaitable[Any]], recv: Callable[[], Awaitable[Any]], payload: bytes
) -> tuple[Operation, Operation]:
    """Round trips and batches for a client whose messages are sent and received by awaiting calls."""

    async def trips(count: int) -> None:
        for _ in range(count):
            await send(payload)
            await recv()

    async def batch(count: int) -> None:
        for _ in range(count):
            await send(payload)
        for _ in range(count):
            await recv()

    return trips, batch


# ------------------------------------------------------------------ asyncio clients (each returns its operations)


async def open_wsstack(url: str, payload: bytes, handler: bool) -> tuple[Operation, Operation, Callable[[], Any]]:
    from wsstack.asyncio import connect
    from wsstack.options import Options

    ws = await connect(url, options=Options(max_message_size=MAX_SIZE, ping_interval=None), proxy=None)
    if not handler:
        return (*echo_operations(ws.send, ws.recv, payload), ws.close)

    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {}

    def on_message(message: bytes) -> None:
        state["left"] -= 1
        if state["left"] == 0:
            state["done"].set_result(None)
        elif state["reply"]:
            ws.send_nowait(payload)

    ws.set_message_handler(on_message)

    async def run(count: int, reply: bool) -> None:
        state.update(left=count, reply=reply, done=loop.create_future())
        for _ in range(1 if reply else count):
            ws.send_nowait(payload)
        await state["done"]

    return (lambda count: run(count, True)), (lambda count: run(count, False)), ws.close


async def open_picows(url: str, payload: bytes) -> tuple[Operation, Operation, Callable[[], Any]]:
    from picows import WSListener, WSMsgType, ws_connect

    loop = asyncio.get_running_loop()

    class Counter(WSListener):  # type: ignore[misc]
        left = 0
        reply = False
        done: asyncio.Future[None]

        def on_ws_frame(self, transport, frame):  # type: ignore[no-untyped-def]
            if frame.msg_type != WSMsgType.BINARY:
                return
            self.left -= 1
            if self.left == 0:
                self.done.set_result(None)
            elif self.reply:
                transport.send(WSMsgType.BINARY, payload)

    transport, listener = await ws_connect(Counter, url, max_frame_size=MAX_SIZE)

    async def run(count: int, reply: bool) -> None:
        listener.left, listener.reply, listener.done = count, reply, loop.create_future()
        for _ in range(1 if reply else count):
            transport.send(WSMsgType.BINARY, payload)
        await listener.done

    async def close() -> None:
        transport.send_close()
        transport.disconnect()
        await transport.wait_disconnected()

    return (lambda count: run(count, True)), (lambda count: run(count, False)), close


async def open_websockets(url: str, payload: bytes) -> tuple[Operation, Operation, Callable[[], Any]]:
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, max_size=MAX_SIZE, ping_interval=None, proxy=None)
    return (*echo_operations(ws.send, ws.recv, payload), ws.close)


async def open_aiohttp(url: str, payload: bytes) -> tuple[Operation, Operation, Callable[[], Any]]:
    import aiohttp

    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url, compress=0, max_msg_size=MAX_SIZE, autoping=True, heartbeat=None)

    async def close() -> None:
        await ws.close()
        await session.close()

    return (*echo_operations(ws.send_bytes, ws.receive_bytes, payload), close)


async def measure_async(client: str, port: int, kind: str, size: int, seconds: float) -> dict[str, float]:
    url = f"ws://127.0.0.1:{port}/"
    payload = b"\x61" * size
    library = client.removesuffix("-uvloop")
    opened = {
        "wsstack": lambda: open_wsstack(url, payload, handler=False),
        "wsstack-handler": lambda: open_wsstack(url, payload, handler=True),
        "picows": lambda: open_picows(url, payload),
        "websockets": lambda: open_websockets(url, payload),
        "aiohttp": lambda: open_aiohttp(url, payload),
    }[library]
    trips, batch, close = await opened()
    unit = BURST if kind == "round trips" else BATCH[size]
    operation = trips if kind == "round trips" else batch
    result: dict[str, float] = {}
    for _ in timed(seconds, unit, result):
        await operation(unit)
    await close()
    return result


# ------------------------------------------------------------------ threaded clients


def measure_sync(client: str, port: int, kind: str, size: int, seconds: float) -> dict[str, float]:
    if client == "raw":
        # echo_e2e.py's client: it times itself, so the CPU time spans its connection too (one handshake).
        cpu_before = time.process_time()
        rate = (
            round_trips(port, size, seconds) if kind == "round trips" else pipelined(port, size, seconds, BATCH[size])
        )
        count = rate * seconds
        return {"rate": rate, "cpu_us": (time.process_time() - cpu_before) / count * 1e6, "messages": count}
    url = f"ws://127.0.0.1:{port}/"
    payload = b"\x61" * size
    if client == "wsstack-sync":
        from wsstack.options import Options
        from wsstack.sync import connect

        opened: Any = connect(url, options=Options(max_message_size=MAX_SIZE, ping_interval=None), proxy=None)
    else:
        from websockets.sync.client import connect as ws_connect

        opened = ws_connect(url, compression=None, max_size=MAX_SIZE, ping_interval=None, proxy=None)
    with opened as ws:
        send, recv = ws.send, ws.recv

        def trips(count: int) -> None:
            for _ in range(count):
                send(payload)
                recv()

        def batch(count: int) -> None:
            for _ in range(count):
                send(payload)
            for _ in range(count):
                recv()

        unit = BURST if kind == "round trips" else BATCH[size]
        operation = trips if kind == "round trips" else batch
        result: dict[str, float] = {}
        for _ in timed(seconds, unit, result):
            operation(unit)
    return result


def run_client(client: str, port: int, kind: str, size: int, seconds: float) -> dict[str, float]:
    """One measurement, in this (child) process."""
    if client in SYNC_CLIENTS:
        return measure_sync(client, port, kind, size, seconds)
    main = measure_async(client, port, kind, size, seconds)
    if client.endswith("-uvloop"):
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def measure(
    client: str, server: subprocess.Popen[str], port: int, kind: str, size: int, seconds: float
) -> dict[str, float]:
    """One measurement in a child process, with the server's CPU time per message over the child's life."""
    before = cpu_seconds(server.pid)
    command = [sys.executable, __file__, "--run", client, str(port), kind, str(size), str(seconds)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60 + 10 * seconds).stdout
    result: dict[str, float] = json.loads(out)
    result["server_us"] = (cpu_seconds(server.pid) - before) / result["messages"] * 1e6
    return result


# ------------------------------------------------------------------ report


def table(
    title: str,
    clients: tuple[str, ...],
    results: dict[tuple[str, str], list[dict[str, float]]],
    anchors: dict[str, str],
) -> None:
    """Rates and CPU per message per case, with the ratio of each client in ``anchors`` to the client it names."""
    print(f"\n{title}")
    print(f"| case | {' | '.join(clients)} |")
    print("| --- |" + " ---: |" * len(clients))
    for kind, size in CASES:
        for field, label in (("rate", "msgs/s"), ("cpu_us", "client CPU µs/msg"), ("server_us", "server CPU µs/msg")):
            medians = {c: statistics.median(r[field] for r in results[(f"{kind} {size}", c)]) for c in clients}
            cells = []
            for client in clients:
                value = medians[client]
                text = f"{value:,.0f}" if field == "rate" else f"{value:.1f}"
                base = anchors.get(client)
                if field != "server_us" and base is not None:
                    ratio = value / medians[base] if field == "rate" else medians[base] / value
                    text += f" ({ratio:.2f}x)"
                cells.append(text)
            print(f"| {kind} {size} B, {label} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", default="0", help="CPU for the clients and the server, or 'none' (default 0)")
    parser.add_argument("--only", action="append", help="measure only this client (repeatable)")
    parser.add_argument("--run", nargs=5, metavar=("CLIENT", "PORT", "KIND", "SIZE", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        client, port, kind, size, seconds = args.run
        print(json.dumps(run_client(client, int(port), kind, int(size), float(seconds))))
        return
    if args.cpu != "none":
        os.sched_setaffinity(0, {int(args.cpu)})  # inherited by the server and every client process

    clients = tuple(c for c in (*LOOP_CLIENTS, *SYNC_CLIENTS) if not args.only or c in args.only)
    server, port = start(SERVER)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for kind, size in CASES:
                for client in clients:
                    result = measure(client, server, port, kind, size, args.seconds)
                    results.setdefault((f"{kind} {size}", client), []).append(result)
    finally:
        server.kill()
        server.wait()

    print(f"clients and the {SERVER} server on CPU {args.cpu}" if args.cpu != "none" else "unpinned")
    print(f"{args.rounds} rounds of {args.seconds} s, medians; in brackets: the ratio to picows on the same loop")
    print("(for CPU time turned over: picows's / this client's, so above 1 is better than picows everywhere)")
    for loop, suffix in (("default asyncio loop", ""), ("uvloop", "-uvloop")):
        chosen = tuple(c + suffix for c in ASYNC_CLIENTS if c + suffix in clients)
        if chosen:
            anchor = "picows" + suffix
            table(loop, chosen, results, {c: anchor for c in chosen if c != anchor and anchor in chosen})
    chosen = tuple(c for c in SYNC_CLIENTS if c in clients)
    if chosen:
        print("\n(threaded: ratios to websockets.sync; the raw socket client is the ceiling)")
        both = "wsstack-sync" in chosen and "websockets-sync" in chosen
        table("threaded clients", chosen, results, {"wsstack-sync": "websockets-sync"} if both else {})
        if "raw" in chosen:
            print("\nmessages/s as a share of the raw socket client's")
            for kind, size in CASES:
                rates = {c: statistics.median(r["rate"] for r in results[(f"{kind} {size}", c)]) for c in chosen}
                shares = ", ".join(f"{c} {rates[c] / rates['raw']:.2f}" for c in chosen if c != "raw")
                print(f"{kind} {size} B: {shares}")


if __name__ == "__main__":
    main()
