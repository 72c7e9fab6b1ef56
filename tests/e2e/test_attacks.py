"""Hostile clients against the real servers over loopback.

Each attack checks the server answers as RFC 6455 and HTTP say, keeps its
memory bounded, and goes on serving an honest client afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from waiting import wait_until

HERE = Path(__file__).resolve().parent
SERVERS = ["asyncio", "sync"]
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
MiB = 1 << 20


class Target:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def connect(self, extra_headers: bytes = b"") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(UPGRADE + extra_headers + b"\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        return sock

    def assert_serving(self) -> None:
        """An honest client still gets its echo."""
        sock = self.connect()
        sock.sendall(frame(0x81, b"still up"))
        assert read_frame(sock) == (0x81, b"still up")
        sock.close()


@pytest.fixture(params=SERVERS, scope="module")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "attack_server.py"), request.param], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield Target(proc, port)
    proc.kill()
    proc.wait()


def frame(first: int, payload: bytes, key: bytes = b"\x11\x22\x33\x44", masked: bool = True) -> bytes:
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 65536:
        header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return header + payload
    whole = key * (n // 4 + 1)
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(whole[:n], "little")).to_bytes(n, "little") if n else b""
    return header + key + body


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, second = read_exactly(sock, 2)
    n = second & 0x7F
    if n == 126:
        n = int.from_bytes(read_exactly(sock, 2), "big")
    elif n == 127:
        n = int.from_bytes(read_exactly(sock, 8), "big")
    return first, read_exactly(sock, n)


def close_code_after(sock: socket.socket) -> int:
    """Skip data frames; return the code of the server's close frame."""
    while True:
        first, payload = read_frame(sock)
        if first & 0x0F == 0x8:
            return int.from_bytes(payload[:2], "big")


def upgrade_status(target: Target) -> int:
    """The status a new client's upgrade gets, on a connection dropped right after."""
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        sock.sendall(UPGRADE + b"\r\n")
        return http_status(sock)


def http_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def within(target: Target, limit: int) -> _Memory:
    return _Memory(target, limit)


class _Memory:
    """Asserts the server's resident memory grew by less than ``limit`` bytes over the block."""

    def __init__(self, target: Target, limit: int) -> None:
        self.target = target
        self.limit = limit

    def __enter__(self) -> None:
        self.before = self.target.rss()

    def __exit__(self, *exc: object) -> None:
        grown = self.target.rss() - self.before
        assert grown < self.limit, f"server grew by {grown / MiB:.1f} MiB"


# -- the HTTP head


def test_oversized_request_line(target: Target) -> None:
    with within(target, 4 * MiB):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
        sock.sendall(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n")
        assert http_status(sock) == 414
        sock.close()
    target.assert_serving()


@pytest.mark.parametrize(
    "headers", [b"X-Big: " + b"b" * 100_000 + b"\r\n", b"".join(b"X-%d: v\r\n" % i for i in range(1000))]
)
def test_oversized_or_too_many_headers(target: Target, headers: bytes) -> None:
    with within(target, 4 * MiB):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
        try:
            sock.sendall(UPGRADE + headers + b"\r\n")
        except ConnectionError:
            pass  # the server may answer and close before reading it all
        assert http_status(sock) == 431
        sock.close()
    target.assert_serving()


def test_slowloris_handshake_times_out(target: Target) -> None:
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    started = time.monotonic()
    closed = False
    for byte in UPGRADE:
        try:
            sock.sendall(bytes((byte,)))
        except ConnectionError:
            closed = True
            break
        time.sleep(0.1)  # the attack itself: one byte of the head at a time, slowly
        if time.monotonic() - started > 5:
            break
    if not closed:
        sock.settimeout(5)
        try:
            closed = sock.recv(100) == b""
        except ConnectionError:
            closed = True
    assert closed and time.monotonic() - started < 3.5
    sock.close()
    target.assert_serving()


# -- frames


@pytest.mark.parametrize(
    ("name", "wire", "code"),
    [
        ("length 2^63-1", bytes((0x82, 0xFF)) + (2**63 - 1).to_bytes(8, "big") + b"\x01\x02\x03\x04", 1009),
        ("unmasked", frame(0x81, b"hello", masked=False), 1002),
        ("opcode 0x3", frame(0x83, b""), 1002),
        ("opcode 0xB", frame(0x8B, b""), 1002),
        ("invalid UTF-8 text", frame(0x81, b"ok" + b"\xed\xa0\x80"), 1007),
        ("invalid UTF-8 close reason", frame(0x88, b"\x03\xe8\xff\xfe"), 1007),
        ("close code 1005", frame(0x88, (1005).to_bytes(2, "big")), 1002),
        ("close code 999", frame(0x88, (999).to_bytes(2, "big")), 1002),
    ],
)
def test_bad_frames_get_their_close_code(target: Target, name: str, wire: bytes, code: int) -> None:
    with within(target, 4 * MiB):
        sock = target.connect()
        sock.sendall(wire)
        assert close_code_after(sock) == code, name
        sock.close()
    target.assert_serving()


def test_decompression_bomb_is_refused_with_bounded_memory(target: Target) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MiB)
    bomb = b"".join(compressor.compress(chunk) for _ in range(1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]  # 1 GiB of zeros in about 1 MiB
    small = zlib.compressobj(9, zlib.DEFLATED, -15)
    one_kib = (small.compress(bytes(1100 * 1024)) + small.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(bomb) < 1100 * 1024 and len(one_kib) < 1200
    for payload in (one_kib, bomb):
        with within(target, 40 * MiB):
            sock = target.connect(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
            sock.sendall(frame(0xC2, payload))
            assert close_code_after(sock) == 1009
            sock.close()
    target.assert_serving()


def test_hundred_thousand_one_byte_fragments(target: Target) -> None:
    with within(target, 16 * MiB):
        sock = target.connect()
        wire = frame(0x02, b"x") + frame(0x00, b"x") * 99_998 + frame(0x80, b"x")
        try:
            sock.sendall(wire)
        except ConnectionError:
            pass  # refused before the end
        assert close_code_after(sock) == 1009
        sock.close()
    target.assert_serving()


def test_ping_flood_from_a_client_that_never_reads(target: Target) -> None:
    sock = target.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ping = frame(0x89, b"p" * 125)
    sock.settimeout(0.5)
    with within(target, 16 * MiB):
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sent < 300_000:
            try:
                sock.sendall(ping * 100)
            except (TimeoutError, ConnectionError):
                break  # the server stopped reading us: back-pressure works
            sent += 100
    sock.close()
    target.assert_serving()


def test_client_that_never_reads_is_bounded_and_closed(target: Target) -> None:
    sock = target.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(0.5)
    message = frame(0x82, os.urandom(65536))
    with within(target, 32 * MiB):
        for _ in range(200):  # 13 MiB of echoes the client never reads
            try:
                sock.sendall(message)
            except (TimeoutError, ConnectionError):
                break
    # The heartbeat gets no pong, so the server fails the connection and drops it.
    sock.settimeout(15)
    ended = False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                ended = True
                break
        except ConnectionError:
            ended = True
            break
    assert ended
    sock.close()
    target.assert_serving()


def answer_pings(socks: list[socket.socket], pending: dict[socket.socket, bytes]) -> None:
    """Pong every ping that has arrived, as an idle but live client does (only pings come to them)."""
    for sock in socks:
        sock.setblocking(False)
        try:
            data = pending.pop(sock, b"") + sock.recv(65536)
        except BlockingIOError:
            continue
        finally:
            sock.setblocking(True)
        while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
            first, n = data[0], data[1] & 0x7F
            assert first == 0x89 and n < 126, data  # pings, nothing else, to an idle connection
            sock.sendall(frame(0x8A, data[2 : 2 + n]))
            data = data[2 + n :]
        if data:
            pending[sock] = data


def test_two_thousand_idle_connections_then_max_connections(target: Target) -> None:
    socks: list[socket.socket] = []
    # The server's heartbeat (4 s, then 4 s for the pong) would drop silent ones while the rest
    # connect, which under coverage can take longer than that, and free slots below the limit.
    pending: dict[socket.socket, bytes] = {}
    with within(target, 64 * MiB):
        for n in range(2000):
            socks.append(target.connect())
            if n % 200 == 199:
                answer_pings(socks, pending)
        answer_pings(socks, pending)
        extra = socket.create_connection(("127.0.0.1", target.port), timeout=10)
        extra.sendall(UPGRADE + b"\r\n")
        assert http_status(extra) == 503
        extra.close()
    # The idle ones answer pings, so heartbeats keep them; they still echo.
    for sock in socks[::400]:
        sock.sendall(frame(0x81, b"alive"))
        first, payload = read_frame(sock)
        while first != 0x81:
            first, payload = read_frame(sock)
        assert payload == b"alive"
    for sock in socks:
        sock.close()
    # The 2,000 slots come free as the server reads the closes: a new client gets in once one has.
    wait_until(lambda: upgrade_status(target) == 101, 10)
    target.assert_serving()
