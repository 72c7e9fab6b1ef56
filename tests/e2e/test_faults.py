"""Faults from the machine, on both servers: out of descriptors, a reset in the TLS handshake, a slow loop.

Out of descriptors, a server's ``accept()`` fails until a connection closes.
Those servers run in their own process, under a low ``RLIMIT_NOFILE``
(fd_limit_server.py), so that the test process keeps its own limit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import masked, unmasked
from sync_helpers import TLSContexts, tls_contexts
from waiting import bounded, wait_until, wait_until_async
from wsstack import asyncio as wsasyncio
from wsstack import sync as wssync
from wsstack.session import ACCEPT_RETRY

HERE = Path(__file__).resolve().parent
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
STEP = 10.0
#: The server process's descriptor limit: a few dozen connections fill it.
LIMIT = 64
FAILED = "accept() failed: too many open files"


class LimitedServer:
    """The server process, with its log lines as they come."""

    def __init__(self, kind: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fd_limit_server.py"), kind, str(LIMIT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.log: list[str] = []
        self._terminated = False
        self._reader = threading.Thread(target=self._read_log, args=(self.proc.stderr,), daemon=True)
        self._reader.start()
        self.port = int(self.proc.stdout.readline())

    def _read_log(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.log.append(line.rstrip("\n"))

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log if text in line]

    def terminate(self) -> None:
        """SIGTERM: a graceful shutdown begins (once: a second SIGTERM may end a sync server at once)."""
        if not self._terminated and self.proc.poll() is None:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> list[str]:
        """SIGTERM, and the end of the process; the whole log."""
        self.terminate()
        try:
            self.proc.wait(STEP)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(STEP)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.log


@contextmanager
def resource_warnings() -> Iterator[list[str]]:
    """The ResourceWarnings of what the block leaves to the collector (objects that were not closed)."""
    gc.collect()  # what earlier tests left to the collector is finalized now, not counted here
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            found: list[str] = []
            yield found
            gc.collect()
        found.extend(str(w.message) for w in caught if issubclass(w.category, ResourceWarning))
    finally:
        gc.enable()


@contextmanager
def limited_server(kind: str) -> Iterator[LimitedServer]:
    server = LimitedServer(kind)
    try:
        yield server
    finally:
        server.stop()


def upgrade(port: int) -> socket.socket:
    """A socket that sent a complete upgrade request, not waiting for the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
    sock.sendall(UPGRADE)
    return sock


def answered(sock: socket.socket, server: LimitedServer) -> bool:
    """True when the 101 comes; False when first the server logs that it cannot accept (the request waits)."""
    head = b""
    deadline = time.monotonic() + STEP
    sock.settimeout(0.02)
    try:
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                if not head and server.lines(FAILED):
                    return False
                continue
            assert chunk, head
            head += chunk
            if b"\r\n\r\n" in head:
                assert head.startswith(b"HTTP/1.1 101 "), head
                return True
    finally:
        sock.settimeout(STEP)
    raise AssertionError(f"neither an answer nor a log line in {STEP} s: {head!r}")


def read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    return head


def read_frame_and_close_code(sock: socket.socket) -> int:
    """The code of the close frame the server sends first (it sends nothing else unasked)."""
    head = read_exactly(sock, 2)
    assert head[0] == 0x88, head
    return int.from_bytes(read_exactly(sock, head[1] & 0x7F)[:2], "big")


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, data
        data += chunk
    return data


def echoes(sock: socket.socket, text: bytes) -> bool:
    sock.sendall(masked(0x81, text))
    expected = unmasked(0x81, text)
    got = b""
    while len(got) < len(expected):
        chunk = sock.recv(len(expected) - len(got))
        assert chunk, got
        got += chunk
    return got == expected


def fill(server: LimitedServer, served: list[socket.socket], waiting: list[socket.socket]) -> None:
    """Connect until a request goes unanswered and the server says why."""
    while not waiting:
        assert len(served) < LIMIT, "the descriptor limit was never reached"
        sock = upgrade(server.port)
        (served if answered(sock, server) else waiting).append(sock)


@pytest.mark.parametrize("kind", ["sync", "asyncio", "uvloop"])
@bounded(60)
def test_out_of_descriptors_the_server_backs_off_logs_once_and_keeps_serving(kind: str) -> None:
    if kind == "uvloop":
        pytest.importorskip("uvloop")
    with limited_server(kind) as server:
        served: list[socket.socket] = []
        waiting: list[socket.socket] = []
        try:
            fill(server, served, waiting)
            waiting += [upgrade(server.port) for _ in range(3)]
            time.sleep(10 * ACCEPT_RETRY)  # ten attempts: still one line
            [line] = server.lines(FAILED)
            assert line.startswith("WARNING wsstack: ") and f"(limit {LIMIT} per process, RLIMIT_NOFILE)" in line
            assert all(echoes(sock, b"still served %d" % i) for i, sock in enumerate(served))
            # At the limit, clients come and go: each one that leaves lets one waiting client in, and no line is logged.
            for _ in range(3):
                served.pop(0).close()
                sock = waiting.pop(0)
                assert read_head(sock).startswith(b"HTTP/1.1 101 ")
                assert echoes(sock, b"served at last")
                served.append(sock)
            time.sleep(3 * ACCEPT_RETRY)
            assert len(server.lines(FAILED)) == 1 and not server.lines("accept() works again"), server.log
            # Enough descriptors free: the last waiting client is served, and the trouble is over.
            for _ in range(3):
                served.pop(0).close()
            (sock,) = waiting
            assert read_head(sock).startswith(b"HTTP/1.1 101 ")
            assert echoes(sock, b"served at last")
            wait_until(lambda: server.lines("accept() works again"), STEP)
        finally:
            for sock in served + waiting:
                sock.close()
        log = server.stop()
    assert server.proc.returncode == 0, log
    assert len(server.lines(FAILED)) == 1 and len(server.lines("accept() works again")) == 1, log
    loud = [line for line in log if not line.startswith("INFO ")]
    assert loud == server.lines(FAILED), log


@pytest.mark.parametrize("kind", ["sync", "asyncio", "uvloop"])
@bounded(60)
def test_a_server_out_of_descriptors_shuts_down_cleanly(kind: str) -> None:
    """SIGTERM while accepting is paused: the retry timer goes with the listening socket."""
    if kind == "uvloop":
        pytest.importorskip("uvloop")
    with limited_server(kind) as server:
        served: list[socket.socket] = []
        waiting: list[socket.socket] = []
        try:
            fill(server, served, waiting)
            server.terminate()
            for sock in served:
                assert read_frame_and_close_code(sock) == 1001  # going away, as at any shutdown
                sock.sendall(masked(0x88, (1001).to_bytes(2, "big")))
            started = time.monotonic()
            log = server.stop()
            assert time.monotonic() - started < 5, "the shutdown waited for something"
        finally:
            for sock in served + waiting:
                sock.close()
    assert server.proc.returncode == 0, log
    assert [line for line in log if not line.startswith("INFO ")] == server.lines(FAILED), log


# -- a reset in the middle of the TLS handshake


@pytest.fixture(scope="module")
def tls() -> TLSContexts:
    return tls_contexts()


#: How far the client gets before it resets: at once, halfway through its
#: ClientHello, or after the server began to answer it.
RESET_STAGES = ["connect", "half-hello", "hello"]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def reset_in_handshake(port: int, stage: str, client_context: ssl.SSLContext) -> None:
    """A TLS client that resets the connection (SO_LINGER 0, then close) part of the way into its handshake."""
    outgoing = ssl.MemoryBIO()
    tls = client_context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    with socket.create_connection(("127.0.0.1", port), timeout=STEP) as sock:
        if stage == "half-hello":
            sock.sendall(hello[: len(hello) // 2])
        elif stage == "hello":
            sock.sendall(hello)
            assert sock.recv(1)  # the server's ServerHello has begun: it is mid-handshake
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def echo_over_tls(port: int, client_context: ssl.SSLContext) -> str:
    with wssync.connect(f"wss://localhost:{port}/ws", ssl=client_context) as ws:
        ws.send("after the resets")
        reply = ws.recv(timeout=STEP)
    assert isinstance(reply, str)
    return reply


@pytest.mark.parametrize("stage", RESET_STAGES)
@bounded(30)
def test_a_reset_in_the_tls_handshake_is_quiet_on_the_sync_server(
    stage: str, tls: TLSContexts, caplog: pytest.LogCaptureFixture
) -> None:
    server = wssync.Server(ssl=tls.server)

    @server.get("/ws")
    def echo(ctx: wssync.Context) -> None:
        ws = ctx.upgrade_to_websocket()
        for message in ws:
            ws.send(message)

    with caplog.at_level(logging.DEBUG):  # the records keep what they name alive: nothing is left to finalizers
        server.listen(0)
        try:
            descriptors = open_descriptors()
            for _ in range(3):
                reset_in_handshake(server.port, stage, tls.client)
            wait_until(lambda: not server._http, STEP)  # each connection closed, none left behind
            wait_until(lambda: open_descriptors() == descriptors, STEP)  # and each socket closed
            assert echo_over_tls(server.port, tls.client) == "after the resets"
        finally:
            server.shutdown(timeout=5)
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG] == []


@pytest.mark.parametrize("stage", RESET_STAGES)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@bounded(30)
def test_a_reset_in_the_tls_handshake_is_quiet_on_the_asyncio_server(
    loop: str, stage: str, tls: TLSContexts, caplog: pytest.LogCaptureFixture
) -> None:
    factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else asyncio.new_event_loop

    async def main() -> None:
        server = wsasyncio.Server(ssl=tls.server)

        @server.get("/ws")
        async def echo(ctx: wsasyncio.Context) -> None:
            ws = await ctx.upgrade_to_websocket()
            async for message in ws:
                await ws.send(message)

        await server.listen(0)
        try:
            in_thread = asyncio.get_running_loop().run_in_executor
            for _ in range(3):
                await in_thread(None, reset_in_handshake, server.port, stage, tls.client)

            async def nothing_left() -> bool:
                assert server._listener is not None
                return not server._protocols and not server._listener.starting

            await wait_until_async(nothing_left, STEP)
            assert await in_thread(None, echo_over_tls, server.port, tls.client) == "after the resets"
        finally:
            await server.close(timeout=5)

    with caplog.at_level(logging.DEBUG), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG] == []


# -- other accept() failures


def _lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@bounded(30)
def test_an_accept_error_that_persists_pauses_accepting_and_logs_once_on_the_asyncio_server(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A listening socket shut down under the server fails every accept() with EINVAL while
    # it stays readable: retried at each readiness, that spun and logged thousands of lines.
    factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else asyncio.new_event_loop

    async def main() -> None:
        server = wsasyncio.Server()
        await server.listen(0)
        try:
            assert server._listener is not None
            server._listener.sockets[0].shutdown(socket.SHUT_RDWR)
            await asyncio.sleep(6 * ACCEPT_RETRY)
        finally:
            await server.close(timeout=5)

    with caplog.at_level(logging.DEBUG, logger="wsstack"), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    assert len(_lines(caplog, "accept() failed")) == 1, _lines(caplog, "accept")


@bounded(30)
def test_an_accept_error_that_persists_pauses_accepting_and_logs_once_on_the_sync_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = wssync.Server()
    with caplog.at_level(logging.DEBUG, logger="wsstack"):
        server.listen(0)
        try:
            assert server._listener is not None
            server._listener.shutdown(socket.SHUT_RDWR)
            time.sleep(6 * ACCEPT_RETRY)
        finally:
            server.shutdown(timeout=5)
    assert len(_lines(caplog, "accept() failed")) == 1, _lines(caplog, "accept")


@bounded(30)
def test_port_zero_is_one_free_port_on_every_address_of_the_host() -> None:
    from wsstack.asyncio.server import _bind_all

    # "localhost" resolves to both on many systems; the server listens on each address.
    infos = socket.getaddrinfo("127.0.0.1", 0, type=socket.SOCK_STREAM)
    infos += socket.getaddrinfo("::1", 0, type=socket.SOCK_STREAM)
    sockets = _bind_all("localhost", infos, 0, 16, False)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(sockets) == 2 and len(ports) == 1, [sock.getsockname() for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@bounded(30)
def test_a_connection_accepted_just_before_close_is_closed_not_left_to_its_finalizer(loop: str) -> None:
    factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    client = socket.socket()

    async def main() -> None:
        server = wsasyncio.Server()
        await server.listen(0)
        listener = server._listener
        assert listener is not None
        asyncio.get_running_loop().remove_reader(listener.sockets[0].fileno())  # accept when told to
        client.connect(("127.0.0.1", server.port))
        await asyncio.sleep(0.1)
        listener._accept(listener.sockets[0])  # its setup task is made, and has not run
        assert listener.starting
        await server.close(timeout=1)  # in the same loop iteration: the task is cancelled before it runs

    try:
        with resource_warnings() as unclosed, asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
        assert unclosed == []
        client.settimeout(STEP)
        assert client.recv(16) == b""
    finally:
        client.close()


# -- a handler that blocks the event loop


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@bounded(60)
def test_a_handler_that_blocks_the_loop_delays_the_others_and_loses_nothing(loop: str) -> None:
    """200 ms of ``time.sleep`` in a handler: what other clients send meanwhile all comes back, in order."""
    factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    clients, messages = 4, 100
    blocking = threading.Event()
    blocked: list[tuple[float, float]] = []

    async def main() -> None:
        server = wsasyncio.Server()

        @server.get("/block")
        async def block(ctx: wsasyncio.Context) -> None:
            ws = await ctx.upgrade_to_websocket()
            async for _ in ws:
                started = time.monotonic()
                blocking.set()
                time.sleep(0.2)  # the fault itself: the whole loop waits
                blocked.append((started, time.monotonic()))
                await ws.send("unblocked")

        @server.get("/ws")
        async def echo(ctx: wsasyncio.Context) -> None:
            ws = await ctx.upgrade_to_websocket()
            async for message in ws:
                await ws.send(message)

        await server.listen(0)
        try:
            port = server.port
            await asyncio.get_running_loop().run_in_executor(None, exchange, port)
        finally:
            await server.close(timeout=5)

    def exchange(port: int) -> None:
        others = [wssync.connect(f"ws://127.0.0.1:{port}/ws") for _ in range(clients)]
        sent: dict[int, float] = {}
        with wssync.connect(f"ws://127.0.0.1:{port}/block") as blocker:
            blocker.send("block")
            assert blocking.wait(STEP)

            def send_all(n: int) -> None:
                for i in range(messages):
                    others[n].send(f"{n}:{i}:" + "x" * 100)
                sent[n] = time.monotonic()

            senders = [threading.Thread(target=send_all, args=(n,)) for n in range(clients)]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join(STEP)
            assert blocker.recv(timeout=STEP) == "unblocked"
        ((started, ended),) = blocked
        assert max(sent.values()) < ended, "the messages were meant to be sent while the loop was blocked"
        for n, ws in enumerate(others):
            with ws:
                received = [ws.recv(timeout=STEP) for _ in range(messages)]
                assert received == [f"{n}:{i}:" + "x" * 100 for i in range(messages)]
        assert ended - started >= 0.2

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
