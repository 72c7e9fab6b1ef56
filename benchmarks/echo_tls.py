"""wss:// echo: wsstack's own TLS layer beside asyncio's (sslproto), websockets and uvloop.

    python benchmarks/echo_tls.py [--seconds 1] [--rounds 3] [--idle 500] [--cpu 0 | --cpu none]

Servers, each in its own process, with a throwaway certificate (trustme):
``wsstack`` (asyncio's loop, ``wsstack.asyncio.tls``), ``wsstack-sslproto``
(the same server with asyncio's TLS, through the private switch
``wsstack.asyncio.tls._force_sslproto``), ``websockets`` (asyncio's TLS
too), ``wsstack-uvloop`` (uvloop's TLS), ``wsstack-sync`` (the threaded
server, whose transport runs TLS through the ssl module's sockets; default
thread stacks, which cost address space, not resident memory), and
``wsstack-ws``, plain ws:// for reference. The client is blocking ssl
sockets in this process, so it costs the same for every server.

It prints server memory per idle wss:// connection (each connection echoes
one message first, so its TLS state has been used both ways; RSS delta over
the count), the same for a fifth as many connections that each echoed a
1 MiB message (what buffers keep once grown), round trips per second for 1 KiB and 64 KiB messages, and
messages per second pipelined (about 1 MiB sent, then read back), with the
ratio of ours to sslproto's. As in echo_e2e.py, client and servers share
CPU 0 by default, and the median of the rounds is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from echo_e2e import echo_size, free_port, masked_frame, pipelined_on, read_exactly, round_trips_on, rss_per_connection
from echo_servers import recv_send_echo, sync_recv_send_echo

HERE = Path(__file__).resolve().parent
MIB = 1 << 20
SERVERS = ("wsstack", "wsstack-sslproto", "websockets", "wsstack-uvloop", "wsstack-sync", "wsstack-ws")
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


# ------------------------------------------------------------------ servers (run as --serve IMPL PORT DIR)


async def run_wsstack(port: int, context: ssl.SSLContext | None) -> None:
    from wsstack.asyncio import Server
    from wsstack.options import Options

    server = Server(Options(max_message_size=16 << 20, max_queue=64, ping_interval=None))
    server.ssl = context

    server.get("/")(recv_send_echo)

    await server.listen(port, "127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()


def run_wsstack_sync(port: int, context: ssl.SSLContext) -> None:
    from wsstack.options import Options
    from wsstack.sync import Server

    server = Server(Options(max_message_size=16 << 20, max_queue=64, ping_interval=None, ping_timeout=None))
    server.ssl = context

    server.get("/")(sync_recv_send_echo)

    server.listen(port, backlog=4096)
    print("ready", flush=True)
    server.serve_forever()


async def run_websockets(port: int, context: ssl.SSLContext) -> None:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws):  # type: ignore[no-untyped-def]
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the idle connections end without a close frame

    async with serve(echo, "127.0.0.1", port, ssl=context, compression=None, max_size=16 << 20, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Event().wait()


def serve(impl: str, port: int, directory: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    if impl == "websockets":
        asyncio.run(run_websockets(port, context))
    elif impl == "wsstack-uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_wsstack(port, context))
    elif impl == "wsstack-sync":
        run_wsstack_sync(port, context)
    elif impl == "wsstack-ws":
        asyncio.run(run_wsstack(port, None))
    else:
        if impl == "wsstack-sslproto":
            from wsstack.asyncio import tls

            tls._force_sslproto = True
        asyncio.run(run_wsstack(port, context))


# ------------------------------------------------------------------ client


def start(impl: str, directory: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", impl, str(port), str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


def open_wss(port: int, context: ssl.SSLContext | None) -> socket.socket:
    """A connection through ``context``, or plain ws:// without one."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(30)  # an error rather than a hang if something stalls
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(HANDSHAKE)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data[:100]
    return sock


def round_trips(port: int, context: ssl.SSLContext | None, size: int, seconds: float) -> float:
    return round_trips_on(open_wss(port, context), size, seconds, burst=20)


def pipelined(port: int, context: ssl.SSLContext | None, size: int, seconds: float) -> float:
    """About 1 MiB of messages sent, then read: kernel buffers hold that much, so the client needs no thread."""
    return pipelined_on(open_wss(port, context), size, seconds, max(1, (1 << 20) // size))


def idle_memory(
    proc: subprocess.Popen[str], port: int, context: ssl.SSLContext | None, count: int, size: int = 5
) -> float:
    frame = masked_frame(b"h" * size)
    buf = bytearray(echo_size(size))

    def open_used() -> socket.socket:
        sock = open_wss(port, context)
        sock.sendall(frame)
        read_exactly(sock, len(buf), buf)
        return sock

    return rss_per_connection(proc, open_used, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--cpu", default="0", help="CPU for the client and every server, or 'none' (default 0)")
    args = parser.parse_args()
    if args.cpu != "none":
        os.sched_setaffinity(0, {int(args.cpu)})  # inherited by the servers started below

    import trustme

    authority = trustme.CA()
    cert = authority.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cert.private_key_and_cert_chain_pem.write_to_path(directory / "chain.pem")
        cert.private_key_pem.write_to_path(directory / "key.pem")
        servers = {impl: start(impl, directory) for impl in SERVERS}
        contexts = {impl: None if impl == "wsstack-ws" else context for impl in SERVERS}
        results: dict[tuple[str, str], list[float]] = {}
        try:
            cases = [(f"round trips/s {size} B", round_trips, size) for size in (1024, 65536)]
            cases += [(f"pipelined msgs/s {size} B", pipelined, size) for size in (1024, 65536)]
            for _ in range(args.rounds):
                for name, func, size in cases:
                    for impl, (_, port) in servers.items():
                        results.setdefault((name, impl), []).append(func(port, contexts[impl], size, args.seconds))
            memory = {impl: idle_memory(p, port, contexts[impl], args.idle) for impl, (p, port) in servers.items()}
            # What stays after a large message: buffers that grew for it and were not given back.
            count = max(1, args.idle // 5)
            after_mib = {impl: idle_memory(p, port, contexts[impl], count, MIB) for impl, (p, port) in servers.items()}
        finally:
            for proc, _ in servers.values():
                proc.kill()

    print(f"client and servers on CPU {args.cpu}" if args.cpu != "none" else "unpinned")
    print("x sslproto: wsstack / wsstack-sslproto (for memory: sslproto's / ours), above 1 is better for ours")
    print("wsstack-ws is plain ws://, for what TLS adds")
    print(f"{'case':<26}" + "".join(f"{impl:>18}" for impl in SERVERS) + f"{'x sslproto':>12}")
    for name, _, _ in cases:
        medians = {impl: statistics.median(results[(name, impl)]) for impl in SERVERS}
        line = f"{name:<26}" + "".join(f"{medians[i]:>18,.0f}" for i in SERVERS)
        print(line + f"{medians['wsstack'] / medians['wsstack-sslproto']:>11.2f}x")
    line = f"{'KiB per idle connection':<26}" + "".join(f"{memory[i]:>18.1f}" for i in SERVERS)
    print(line + f"{memory['wsstack-sslproto'] / memory['wsstack']:>11.2f}x")
    line = f"{'KiB idle after 1 MiB echo':<26}" + "".join(f"{after_mib[i]:>18.1f}" for i in SERVERS)
    print(line + f"{after_mib['wsstack-sslproto'] / after_mib['wsstack']:>11.2f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
