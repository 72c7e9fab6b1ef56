"""End-to-end echo benchmark: our servers beside the websockets asyncio server.

    python benchmarks/echo_e2e.py [--seconds 2] [--rounds 3] [--cpu 0 | --cpu none] [--baseline DIR]

Each server runs in its own process; the client is one plain blocking socket
in this process that sends pre-masked frames, so it costs the same for every
server and the difference is the servers'. Rounds alternate between the
servers and the median is kept, since the machine is shared and noisy. It
prints round trips per second (one message in flight), pipelined messages
per second (1,000 sent, then 1,000 read), 64 KiB messages streamed (16 in
flight, sent by a second thread), the server's CPU time per round trip, and
server memory per idle connection, with ratios to websockets on the same
event loop.

Servers: ``wsstack`` (a handler looping on ``await ws.recv()`` and ``await
ws.send()``), ``wsstack-handler`` (``ws.set_message_handler(ws.send_nowait)``),
``picows`` (the fastest Python peer, for reference: install it with the
``bench`` extra), ``websockets``, and both libraries' recv loops again on
uvloop.

By default the client and the servers share CPU 0. On a virtual machine
whose other CPU is idle, a round trip otherwise waits for that CPU to wake
up twice (tens of microseconds each), and that wait, which no library
controls, swamps the work being compared: unpinned, even a bare asyncio
protocol that writes back a canned reply measured only 1.4x websockets.
``--cpu none`` measures unpinned anyway; the server CPU time per round trip
is comparable either way.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = ("wsstack", "wsstack-handler", "picows", "websockets", "wsstack-uvloop", "websockets-uvloop")
# Each ratio column: a server against websockets on the same event loop (the last columns of the table).
RATIOS = (
    ("wsstack", "websockets"),
    ("wsstack-handler", "websockets"),
    ("picows", "websockets"),
    ("wsstack-uvloop", "websockets-uvloop"),
)
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The suffix of a server run from the ``--baseline`` checkout.
BASE = "@base"


def server_environment(impl: str, baseline: Path | None) -> tuple[str, dict[str, str]]:
    """The server's name without ``@base``, and the environment that imports the right wsstack."""
    env = dict(os.environ)
    if impl.endswith(BASE):
        assert baseline is not None
        impl = impl[: -len(BASE)]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(baseline / "src"), env.get("PYTHONPATH")]))
    return impl, env


def start(impl: str, baseline: Path | None = None) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    impl, env = server_environment(impl, baseline)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "echo_servers.py"), impl, str(port)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


def open_ws(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(HANDSHAKE)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data[:100]
    return sock


def masked_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((0x82, 0x80 | n))
    elif n < 65536:
        header = bytes((0x82, 0xFE)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x82, 0xFF)) + n.to_bytes(8, "big")
    masked = (
        int.from_bytes(payload, "little") ^ int.from_bytes(key * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    ).to_bytes(n, "little")
    return header + key + masked


def echo_size(size: int) -> int:
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


def read_exactly(sock: socket.socket, count: int, buf: bytearray) -> None:
    view = memoryview(buf)
    got = 0
    while got < count:
        n = sock.recv_into(view[got:count])
        if not n:
            raise ConnectionError("server closed")
        got += n


def round_trips(port: int, size: int, seconds: float) -> float:
    """Round trips per second, one message in flight."""
    return round_trips_on(open_ws(port), size, seconds)


def round_trips_on(sock: socket.socket, size: int, seconds: float, burst: int = 50) -> float:
    """``round_trips`` on an open connection (plain or TLS), which it closes; the clock is read every ``burst``."""
    frame = masked_frame(b"\x61" * size)
    expect = echo_size(size)
    buf = bytearray(expect)
    count = 0
    start_at = time.perf_counter()
    deadline = start_at + seconds
    while True:
        for _ in range(burst):
            sock.sendall(frame)
            read_exactly(sock, expect, buf)
        count += burst
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start_at
    sock.close()
    return count / elapsed


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_per_round_trip(pid: int, port: int, size: int, seconds: float) -> tuple[float, float]:
    """Round trips per second, and the server's CPU microseconds per round trip."""
    before = cpu_seconds(pid)
    rate = round_trips(port, size, seconds)
    return rate, (cpu_seconds(pid) - before) / (rate * seconds) * 1e6


def pipelined(port: int, size: int, seconds: float, batch_size: int = 1000) -> float:
    """Messages per second, sending ``batch_size`` messages and then reading their echoes, batch after batch."""
    return pipelined_on(open_ws(port), size, seconds, batch_size)


def pipelined_on(sock: socket.socket, size: int, seconds: float, batch_size: int) -> float:
    """``pipelined`` on an open connection (plain or TLS), which it closes."""
    batch = masked_frame(b"\x62" * size) * batch_size
    expect = echo_size(size) * batch_size
    buf = bytearray(expect)
    count = 0
    start_at = time.perf_counter()
    deadline = start_at + seconds
    while time.perf_counter() < deadline:
        sock.sendall(batch)
        read_exactly(sock, expect, buf)
        count += batch_size
    elapsed = time.perf_counter() - start_at
    sock.close()
    return count / elapsed


def streamed(port: int, size: int, seconds: float, window: int = 16) -> float:
    """Messages per second with ``window`` messages in flight, sent by a thread while this one reads.

    For large messages, where a whole batch sent at once would not fit in
    the socket buffers: a server that stops reading while its replies back
    up would leave a single-threaded client blocked in ``sendall``.
    """
    sock = open_ws(port)
    frame = masked_frame(b"\x62" * size)
    expect = echo_size(size)
    buf = bytearray(expect)
    credit = threading.Semaphore(window)
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            if credit.acquire(timeout=0.1):
                sock.sendall(frame)

    sender = threading.Thread(target=send)
    count = 0
    start_at = time.perf_counter()
    deadline = start_at + seconds
    sender.start()
    try:
        while time.perf_counter() < deadline:
            read_exactly(sock, expect, buf)
            count += 1
            credit.release()
        elapsed = time.perf_counter() - start_at
    finally:
        stop.set()
        sender.join()
    sock.close()
    return count / elapsed


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def idle_memory(proc: subprocess.Popen[str], port: int, count: int) -> float:
    return rss_per_connection(proc, lambda: open_ws(port), count)


def rss_per_connection(proc: subprocess.Popen[str], open_one: Callable[[], socket.socket], count: int) -> float:
    """The server's RSS growth in KiB per connection, over ``count`` opened by ``open_one`` after 20 warm ones."""
    warm = [open_one() for _ in range(20)]
    time.sleep(0.3)
    before = rss_kib(proc.pid)
    socks = [open_one() for _ in range(count)]
    time.sleep(0.5)
    after = rss_kib(proc.pid)
    for sock in socks + warm:
        sock.close()
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--cpu", default="0", help="CPU for the client and every server, or 'none' (default 0)")
    parser.add_argument("--baseline", type=Path, help="another checkout whose wsstack servers run beside these")
    args = parser.parse_args()
    if args.cpu != "none":
        os.sched_setaffinity(0, {int(args.cpu)})  # inherited by the servers started below

    ours = [impl for impl in SERVERS if impl.startswith("wsstack")]
    based = [impl + BASE for impl in ours] if args.baseline else []
    servers = {impl: start(impl, args.baseline) for impl in (*SERVERS, *based)}
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        cases = [(f"round trips/s {size} B", round_trips, size) for size in (32, 1024, 65536)]
        cases += [(f"pipelined msgs/s {size} B", pipelined, size) for size in (32, 1024)]
        cases.append(("streamed msgs/s 65536 B", streamed, 65536))
        for _ in range(args.rounds):
            for name, func, size in cases:
                for impl, (proc, port) in servers.items():
                    if func is round_trips and size == 32:
                        rate, micros = server_cpu_per_round_trip(proc.pid, port, size, args.seconds)
                        cpu.setdefault(impl, []).append(micros)
                    else:
                        rate = func(port, size, args.seconds)
                    results.setdefault((name, impl), []).append(rate)
        memory = {impl: idle_memory(proc, port, args.idle) for impl, (proc, port) in servers.items()}
    finally:
        for proc, _ in servers.values():
            proc.kill()

    print(f"client and servers on CPU {args.cpu}" if args.cpu != "none" else "unpinned")
    print("ratios to websockets: wsstack, wsstack-handler, picows; on uvloop: wsstack-uvloop / websockets-uvloop")
    print("(for CPU time and memory: theirs / ours, so above 1 is better for wsstack everywhere)")
    short = {
        "wsstack": "wsstack",
        "wsstack-handler": "handler",
        "picows": "picows",
        "websockets": "websockets",
        "wsstack-uvloop": "ws+uvloop",
        "websockets-uvloop": "wss+uvloop",
    }
    header = f"{'case':<26}" + "".join(f"{short[i]:>12}" for i in SERVERS)
    header += "".join(f"{label:>13}" for label in ("x recv loop", "x handler", "x picows", "x uvloop"))
    print(header)
    for name, _, _ in cases:
        medians = {impl: statistics.median(results[(name, impl)]) for impl in SERVERS}
        line = f"{name:<26}" + "".join(f"{medians[i]:>12,.0f}" for i in SERVERS)
        print(line + "".join(f"{medians[a] / medians[b]:>12.2f}x" for a, b in RATIOS))
    medians = {impl: statistics.median(cpu[impl]) for impl in SERVERS}
    line = f"{'server CPU us/rt 32 B':<26}" + "".join(f"{medians[i]:>12.1f}" for i in SERVERS)
    print(line + "".join(f"{medians[b] / medians[a]:>12.2f}x" for a, b in RATIOS))
    line = f"{'KiB per idle connection':<26}" + "".join(f"{memory[i]:>12.1f}" for i in SERVERS)
    print(line + "".join(f"{memory[b] / memory[a]:>12.2f}x" for a, b in RATIOS))
    if based:
        print(f"\nthis tree against {args.baseline} (above 1: this tree is faster, or uses less)")
        print(f"{'case':<26}" + "".join(f"{impl:>18}" for impl in ours))
        for name, _, _ in cases:
            ratios = [
                statistics.median(results[(name, i)]) / statistics.median(results[(name, i + BASE)]) for i in ours
            ]
            print(f"{name:<26}" + "".join(f"{ratio:>17.3f}x" for ratio in ratios))
        line = f"{'server CPU us/rt 32 B':<26}"
        line += "".join(f"{statistics.median(cpu[i + BASE]) / statistics.median(cpu[i]):>17.3f}x" for i in ours)
        print(line)
        line = f"{'KiB per idle connection':<26}"
        print(line + "".join(f"{memory[i + BASE] / memory[i]:>17.3f}x" for i in ours))


if __name__ == "__main__":
    main()
