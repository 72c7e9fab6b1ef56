"""Echo throughput with 1 and 2 worker processes: ``python -m wsstack echo --workers N``.

    python benchmarks/echo_workers.py [--seconds 3] [--rounds 3] [--clients 2] [--connections 8] [--batch 20]

The server is the command line's echo server (``--workers N --port 0``; it
runs on uvloop when uvloop is installed), started once per worker count.
The load comes from ``--clients`` processes (this script with ``--client``),
each holding ``--connections`` WebSockets and keeping ``--batch`` 32-byte
pre-masked messages in flight on each: it sends a batch on every connection,
then reads every echo. Rounds alternate between the worker counts and the
median is kept. It prints messages echoed per second over all clients, the
ratio to 1 worker, and where the CPU time went: the workers' CPU seconds
per second of wall time (1.0 is one core kept busy; one figure per worker
shows how evenly ``SO_REUSEPORT`` spread the connections) and the clients'.

Nothing is pinned: two workers need two cores. On a machine with only as
many cores as workers the clients compete with the servers for them, and
the sum of the CPU columns near the core count says the machine, not the
server, is the bound.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from echo_e2e import cpu_seconds, echo_size, masked_frame, open_ws, read_exactly

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
#: Seconds for the load processes to start and connect before the measured window opens.
STARTUP = 1.5
LISTENING = re.compile(r"listening on \S+:(\d+) with (\d+) workers")


def client(port: int, start: float, seconds: float, connections: int, batch: int) -> None:
    """One load process: from ``start`` (a ``time.time()``) on, for ``seconds``; prints its rate and CPU share."""
    socks = [open_ws(port) for _ in range(connections)]
    frames = masked_frame(b"\x61" * SIZE) * batch
    expect = echo_size(SIZE) * batch
    buf = bytearray(expect)
    count = 0
    time.sleep(max(0.0, start - time.time()))
    cpu = time.process_time()
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        for sock in socks:
            sock.sendall(frames)
        for sock in socks:
            read_exactly(sock, expect, buf)
        count += batch * connections
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    for sock in socks:
        sock.close()
    print(count / elapsed, cpu / elapsed, flush=True)


def start_server(workers: int, log: Path) -> tuple[subprocess.Popen[bytes], int, list[int]]:
    """The echo server with its workers: the supervisor, its port and the workers' pids."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "wsstack", "echo", "--workers", str(workers), "--port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stderr=out, env=env)
    deadline = time.monotonic() + 30
    while not (match := LISTENING.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server with {workers} workers did not start: {log.read_text()}")
        time.sleep(0.05)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return proc, int(match[1]), [int(pid) for pid in children]


def measure(port: int, pids: list[int], args: argparse.Namespace) -> tuple[float, list[float], float]:
    """Messages per second over all clients, each worker's CPU share, the clients' CPU share.

    The clients start (connected) at one agreed time, so that their start-up and the
    handshakes fall outside the window in which the workers' CPU time is read too.
    """
    start = time.time() + STARTUP
    command = [sys.executable, __file__, "--client", str(port), str(start), str(args.seconds)]
    command += [str(args.connections), str(args.batch)]
    clients = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.clients)]
    time.sleep(max(0.0, start - time.time()))
    before = [cpu_seconds(pid) for pid in pids]
    began = time.perf_counter()
    time.sleep(args.seconds)
    servers = [(cpu_seconds(pid) - cpu) / (time.perf_counter() - began) for pid, cpu in zip(pids, before)]
    outputs = [proc.communicate(timeout=args.seconds + 60)[0].split() for proc in clients]
    return sum(float(out[0]) for out in outputs), servers, sum(float(out[1]) for out in outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="load processes (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="WebSockets per load process (default 8)")
    parser.add_argument("--batch", type=int, default=20, help="messages in flight per WebSocket (default 20)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        port, start, seconds, connections, batch = args.client
        client(int(port), float(start), float(seconds), int(connections), int(batch))
        return

    logs = Path(tempfile.mkdtemp(prefix="echo_workers-"))
    servers = {workers: start_server(workers, logs / f"workers-{workers}.log") for workers in args.workers}
    results: dict[int, list[tuple[float, list[float], float]]] = {workers: [] for workers in args.workers}
    try:
        for _ in range(args.rounds):
            for workers, (_, port, pids) in servers.items():
                results[workers].append(measure(port, pids, args))
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
        for proc, _, _ in servers.values():
            proc.wait(30)

    print(
        f"{os.cpu_count()} CPUs; {args.clients} client processes x {args.connections} WebSockets x "
        f"{args.batch} messages of {SIZE} B in flight; medians of {args.rounds} rounds of {args.seconds:g} s"
    )
    print("| workers | msgs/s | x 1 worker | workers' CPU (cores) | clients' CPU (cores) |")
    print("| ---: | ---: | ---: | --- | ---: |")
    base = statistics.median(rate for rate, _, _ in results[min(args.workers)])
    for workers, rounds in results.items():
        rate = statistics.median(r for r, _, _ in rounds)
        shares = [statistics.median(s[i] for _, s, _ in rounds) for i in range(workers)]
        clients = statistics.median(c for _, _, c in rounds)
        spread = " + ".join(f"{share:.2f}" for share in shares)
        print(f"| {workers} | {rate:,.0f} | {rate / base:.2f}x | {spread} | {clients:.2f} |")


if __name__ == "__main__":
    main()
