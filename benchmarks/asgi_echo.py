"""ASGI echo under uvicorn: wsstack's WebSocket protocol beside uvicorn's own.

    python benchmarks/asgi_echo.py [--seconds 2] [--rounds 3] [--idle 1000] [--cpu 0 | --cpu none]
                                   [--malloc fixed | --malloc glibc] [--ws NAME ...]

One bare ASGI application (compliance/asgi_echo.py: accept, then send every
message back) is served by ``python -m uvicorn`` in its own process once per
WebSocket implementation, all with the same options (``--http h11
--lifespan off --log-level warning``, a 16 MiB message limit, uvicorn's
default keepalive pings):

- ``wsstack``: ``--ws wsstack.uvicorn:WebSocketProtocol``, from this checkout;
- ``websockets-sansio``: uvicorn's implementation over websockets' sans-IO
  protocol, what ``--ws auto`` picks, and the baseline of every ratio;
- ``wsproto``: uvicorn's implementation over wsproto;
- ``wsstack-uvloop`` and ``websockets-sansio-uvloop``: the first two again
  with ``--loop uvloop`` (the others use ``--loop asyncio``);
- ``wsstack-server``: wsstack's own asyncio server (benchmarks/echo_servers.py),
  no uvicorn, to show what the ASGI layer costs.

The client, the rounds and the measures are those of benchmarks/echo_e2e.py:
a blocking socket in this process sending pre-masked binary frames, rounds
alternating between the servers with the median kept, everything pinned to
one CPU unless ``--cpu none``. Measured: round trips per second at 32 B (one
message in flight), pipelined messages per second at 32 B and 1 KiB (1,000
sent, then 1,000 read), the server process's CPU time (user + system, from
/proc) per message in the 32 B cases, and its RSS growth per idle connection.
The table is Markdown; the ratio columns divide by websockets-sansio on the
same loop, turned over for CPU time and memory, so above 1 is better for the
first server everywhere, and the target column holds the issue's bar for
``wsstack`` against ``websockets-sansio``.

Every server runs with glibc's malloc thresholds fixed (``--malloc glibc``
leaves them dynamic): see FIXED_MALLOC for why.

When this checkout has no ``wsstack.uvicorn`` yet, its rows say so and the
rest is measured; ``--ws`` picks the servers to run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import IO

from echo_e2e import (
    BASE,
    HERE,
    cpu_seconds,
    free_port,
    idle_memory,
    pipelined,
    round_trips,
    server_environment,
    start,
)

CHECKOUT = HERE.parent
OURS = "wsstack.uvicorn:WebSocketProtocol"
#: Each server under uvicorn: its ``--ws`` and ``--loop``.
UVICORN = {
    "wsstack": (OURS, "asyncio"),
    "websockets-sansio": ("websockets-sansio", "asyncio"),
    "wsproto": ("wsproto", "asyncio"),
    "wsstack-uvloop": (OURS, "uvloop"),
    "websockets-sansio-uvloop": ("websockets-sansio", "uvloop"),
}
OWN_SERVER = "wsstack-server"
SERVERS = (*UVICORN, OWN_SERVER)
# Each ratio column: a server against websockets-sansio on the same event loop.
RATIOS = (
    ("wsstack", "websockets-sansio"),
    ("wsstack-uvloop", "websockets-sansio-uvloop"),
    ("wsproto", "websockets-sansio"),
    ("wsstack-server", "websockets-sansio"),
)
MAX_SIZE = 16 << 20  # echo_servers.py's limit, so the own server and uvicorn refuse the same messages
#: glibc's malloc thresholds for every server, a little above where glibc moves them itself once it has freed
#: one asyncio read buffer (about 260 KiB, and twice that to trim). asyncio's transport reads into a new 256 KiB
#: bytes object and shrinks it; above the mmap threshold (128 KiB until glibc raises it, which depends on what
#: the process happened to allocate and free before) every read costs an mmap, an mremap and a munmap. That
#: luck halved the own server's round trips after a change (c50ac6d) that touched nothing on its path; fixed,
#: every server reads from the heap and the rows compare the libraries.
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(512 << 10), "MALLOC_TRIM_THRESHOLD_": str(1 << 20)}


@dataclass
class Running:
    """A started server: its process and port, and where its error output goes."""

    proc: subprocess.Popen[str]
    port: int
    stderr: IO[bytes] | None = None
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    memory: float = float("nan")


class Unavailable(Exception):
    """The server exited before it listened, as uvicorn does when the ``--ws`` class does not import."""


def checkout_environment() -> dict[str, str]:
    """An environment in which ``import wsstack`` finds this checkout, whatever the caller's PYTHONPATH."""
    return server_environment("uvicorn" + BASE, CHECKOUT)[1]


def wait_listening(proc: subprocess.Popen[str], port: int, stderr: IO[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise Unavailable(f"not listening after {timeout:.0f} s") from None
            time.sleep(0.05)
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").strip().splitlines()
    raise Unavailable(lines[-1] if lines else f"exited with status {proc.returncode}")


def start_uvicorn(ws: str, loop: str) -> Running:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "asgi_echo:app", "--app-dir", str(HERE.parent / "compliance")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--ws", ws, "--ws-max-size", str(MAX_SIZE)]
    command += ["--loop", loop, "--http", "h11", "--lifespan", "off", "--log-level", "warning"]
    # A file, not a pipe: a server that logs a traceback per message would block on a full pipe nobody reads.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (stop() closes it, with the server)
    proc = subprocess.Popen(command, env=checkout_environment(), stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    running = Running(proc, port, stderr)
    try:
        wait_listening(proc, port, stderr)
    except Unavailable:
        stop(running)
        raise
    return running


def start_server(name: str) -> Running:
    if name == OWN_SERVER:
        # The baseline machinery of echo_e2e puts a checkout's src first; the checkout here is this one.
        proc, port = start("wsstack" + BASE, CHECKOUT)
        return Running(proc, port)
    return start_uvicorn(*UVICORN[name])


def stop(running: Running) -> str:
    """Stop the server as a service manager would, and return what it wrote to stderr."""
    running.proc.terminate()
    try:
        running.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        running.proc.kill()
        running.proc.wait()
    if running.stderr is None:
        return ""
    running.stderr.seek(0)
    text = running.stderr.read().decode(errors="replace")
    running.stderr.close()
    return text


def with_server_cpu(
    running: Running, func: Callable[[int, int, float], float], size: int, seconds: float
) -> tuple[float, float]:
    """Messages per second, and the server's CPU microseconds per message over the same window."""
    before, start_at = cpu_seconds(running.proc.pid), time.perf_counter()
    rate = func(running.port, size, seconds)
    messages = rate * (time.perf_counter() - start_at)
    return rate, (cpu_seconds(running.proc.pid) - before) / messages * 1e6


@dataclass(frozen=True)
class Case:
    name: str
    func: Callable[[int, int, float], float]
    size: int
    cpu_name: str | None  # the row of the server's CPU time per message, if measured in this case
    target: float  # the bar for wsstack / websockets-sansio


CASES = (
    Case("round trips/s, 32 B", round_trips, 32, "server CPU µs/msg, round trips 32 B", 1.3),
    Case("pipelined msgs/s, 32 B", pipelined, 32, "server CPU µs/msg, pipelined 32 B", 3.0),
    Case("pipelined msgs/s, 1 KiB", pipelined, 1024, None, 3.0),
)
CPU_TARGET = 1.5
MEMORY_ROW, MEMORY_TARGET = "KiB per idle connection", 1.0


def measure(servers: dict[str, Running], rounds: int, seconds: float, idle: int) -> None:
    for _ in range(rounds):
        for case in CASES:
            for running in servers.values():
                if case.cpu_name is not None:
                    rate, micros = with_server_cpu(running, case.func, case.size, seconds)
                    running.cpu.setdefault(case.cpu_name, []).append(micros)
                else:
                    rate = case.func(running.port, case.size, seconds)
                running.rates.setdefault(case.name, []).append(rate)
    for running in servers.values():
        running.memory = idle_memory(running.proc, running.port, idle)


def table(servers: dict[str, Running], columns: list[str], missing: dict[str, str]) -> list[str]:
    """The Markdown table: one column per server, then the ratios, then the target."""
    rows: list[tuple[str, dict[str, float], bool, float]] = []  # name, medians, lower is better, target
    for case in CASES:
        medians = {n: statistics.median(r.rates[case.name]) for n, r in servers.items()}
        rows.append((case.name, medians, False, case.target))
    for case in CASES:
        if case.cpu_name is not None:
            medians = {n: statistics.median(r.cpu[case.cpu_name]) for n, r in servers.items()}
            rows.append((case.cpu_name, medians, True, CPU_TARGET))
    rows.append((MEMORY_ROW, {n: r.memory for n, r in servers.items()}, True, MEMORY_TARGET))

    ratio_names = [f"{a} ÷ {b}".replace("websockets-sansio", "sansio") for a, b in RATIOS]
    header = ["case", *columns, *ratio_names, "target, wsstack ÷ sansio"]
    lines = [header, ["---"] + ["---:"] * (len(header) - 1)]
    for name, medians, lower_better, target in rows:
        cells = [name] + ["missing" if c in missing else figure(medians[c], lower_better) for c in columns]
        ratios = [ratio(medians, a, b, lower_better) for a, b in RATIOS]
        cells += ["n/a" if r is None else f"{r:.2f}x" for r in ratios]
        met = "" if ratios[0] is None else " met" if ratios[0] >= target else " not met"
        lines.append([*cells, f"≥ {target:.1f}x{met}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return [
        "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) + " |"
        for line in lines
    ]


def ratio(medians: dict[str, float], a: str, b: str, lower_better: bool) -> float | None:
    """How much better ``a`` did than ``b``, above 1 when better; None when one of them did not run."""
    if a not in medians or b not in medians:
        return None
    return medians[b] / medians[a] if lower_better else medians[a] / medians[b]


def figure(value: float, small: bool) -> str:
    return f"{value:,.1f}" if small else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory row (default 1000)")
    parser.add_argument("--cpu", default="0", help="CPU for the client and every server, or 'none' (default 0)")
    parser.add_argument(
        "--ws", action="append", choices=SERVERS, help="a server to run (repeat for more; default all of them)"
    )
    parser.add_argument(
        "--malloc",
        choices=("fixed", "glibc"),
        default="fixed",
        help="fixed: the servers' glibc malloc thresholds as in FIXED_MALLOC (default); glibc: glibc's own, dynamic",
    )
    args = parser.parse_args()
    if args.malloc == "fixed":
        os.environ.update(FIXED_MALLOC)  # copied into every server's environment below
    if args.cpu != "none":
        os.sched_setaffinity(0, {int(args.cpu)})  # inherited by the servers started below

    wanted = args.ws or list(SERVERS)
    servers: dict[str, Running] = {}
    missing: dict[str, str] = {}
    try:
        for name in wanted:
            try:
                servers[name] = start_server(name)
            except Unavailable as exc:
                missing[name] = str(exc)
        measure(servers, args.rounds, args.seconds, args.idle)
    finally:
        for name, running in servers.items():
            if text := stop(running).strip():
                print(f"{name} wrote to stderr (last lines):", *text.splitlines()[-10:], sep="\n", file=sys.stderr)

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("uvicorn", "websockets", "wsproto", "uvloop"))
    print(f"{versions}; Python {sys.version.split()[0]}")
    pinned = f"client and servers on CPU {args.cpu}" if args.cpu != "none" else "unpinned"
    print(f"{pinned}; {args.rounds} rounds of {args.seconds:g} s, medians; {args.idle} idle connections")
    thresholds = ", ".join(f"{k}={v}" for k, v in FIXED_MALLOC.items())
    print(f"servers' malloc: {thresholds}" if args.malloc == "fixed" else "servers' malloc: glibc's dynamic thresholds")
    for name, reason in missing.items():
        print(f"{name}: did not start ({reason})")
    print("sansio: websockets-sansio on the same loop; for CPU time and memory the ratios are sansio's over")
    print("the other's, so above 1 is better for the first named everywhere\n")
    print("\n".join(table(servers, [s for s in SERVERS if s in wanted], missing)))


if __name__ == "__main__":
    main()
