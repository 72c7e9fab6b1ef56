"""End-to-end echo benchmark of the threaded servers: wsstack.sync beside websockets.sync.

    python benchmarks/echo_sync.py [--seconds 2] [--rounds 3] [--idle 500] [--baseline DIR]

Each server runs in its own process (this script with ``--serve``); the
client is echo_e2e.py's: one plain blocking socket in this process sending
pre-masked frames, the same cost for both servers. Rounds alternate between
the servers and the median is kept. It prints round trips per second (one
message in flight) for 32 B and 1 KiB messages and the server's memory per
idle connection (VmRSS growth over ``--idle`` open connections), each with
the ratio wsstack / websockets.

Both servers run without compression and with a 16 MiB message limit.
Memory is measured twice: with each library's default heartbeat (a ping
every 20 s: a timer on wsstack's I/O thread, a thread per connection in
websockets.sync) and with the heartbeat off. The round trips are measured
with it off. ``--baseline DIR`` adds wsstack from another checkout
(``DIR/src``) to the same rounds, as in echo_e2e.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from echo_e2e import BASE, free_port, idle_memory, round_trips, server_environment
from echo_servers import sync_recv_send_echo

HERE = Path(__file__).resolve().parent
SERVERS = ("wsstack", "websockets")


def serve_wsstack(port: int, heartbeat: bool) -> None:
    from wsstack.options import Options
    from wsstack.sync import Server

    options = Options(max_message_size=16 << 20)
    if not heartbeat:
        options = replace(options, ping_interval=None, ping_timeout=None)
    server = Server(options)

    server.get("/")(sync_recv_send_echo)

    server.listen(port, backlog=4096)
    print("ready", flush=True)
    server.serve_forever()


def serve_websockets(port: int, heartbeat: bool) -> None:
    from websockets.sync.server import serve

    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    interval = {} if heartbeat else {"ping_interval": None}
    with serve(echo, "127.0.0.1", port, compression=None, max_size=16 << 20, **interval) as server:
        print("ready", flush=True)
        server.serve_forever()


def start(impl: str, heartbeat: bool, baseline: Path | None = None) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    impl, env = server_environment(impl, baseline)
    command = [sys.executable, __file__, "--serve", impl, str(port), "on" if heartbeat else "off"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


def memory(impl: str, heartbeat: bool, count: int, baseline: Path | None) -> float:
    proc, port = start(impl, heartbeat, baseline)
    try:
        return idle_memory(proc, port, count)
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--baseline", type=Path, help="another checkout whose wsstack server runs beside these")
    parser.add_argument("--serve", nargs=3, metavar=("IMPL", "PORT", "HEARTBEAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        impl, port, heartbeat = args.serve
        {"wsstack": serve_wsstack, "websockets": serve_websockets}[impl](int(port), heartbeat == "on")
        return

    impls = (*SERVERS, "wsstack" + BASE) if args.baseline else SERVERS
    servers = {impl: start(impl, False, args.baseline) for impl in impls}
    results: dict[tuple[str, str], list[float]] = {}
    sizes = (32, 1024)
    try:
        for _ in range(args.rounds):
            for size in sizes:
                for impl, (_, port) in servers.items():
                    results.setdefault((f"round trips/s {size} B", impl), []).append(
                        round_trips(port, size, args.seconds)
                    )
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    memories = {
        heartbeat: {impl: memory(impl, heartbeat, args.idle, args.baseline) for impl in impls}
        for heartbeat in (True, False)
    }

    print(f"{'case':<28} {'wsstack':>12} {'websockets':>12} {'ratio':>7}")
    for size in sizes:
        name = f"round trips/s {size} B"
        ours = statistics.median(results[(name, "wsstack")])
        theirs = statistics.median(results[(name, "websockets")])
        print(f"{name:<28} {ours:>12,.0f} {theirs:>12,.0f} {ours / theirs:>6.2f}x")
    for heartbeat, label in ((True, "heartbeat on"), (False, "heartbeat off")):
        ours, theirs = memories[heartbeat]["wsstack"], memories[heartbeat]["websockets"]
        name = f"KiB/idle conn, {label}"
        print(f"{name:<28} {ours:>12.1f} {theirs:>12.1f} {theirs / ours:>6.2f}x less")
    if args.baseline:
        print(f"\nthis tree against {args.baseline} (above 1: this tree is faster, or uses less)")
        for size in sizes:
            name = f"round trips/s {size} B"
            ours, base = (statistics.median(results[(name, impl)]) for impl in ("wsstack", "wsstack" + BASE))
            print(f"{name:<28} {ours / base:>6.3f}x")
        for heartbeat, label in ((True, "heartbeat on"), (False, "heartbeat off")):
            ours, base = memories[heartbeat]["wsstack"], memories[heartbeat]["wsstack" + BASE]
            print(f"{'KiB/idle conn, ' + label:<28} {base / ours:>6.3f}x")


if __name__ == "__main__":
    main()
