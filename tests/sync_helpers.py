"""Shared helpers for tests of the threaded transport over real loopback sockets.

The servers listen on 127.0.0.1 on a port the kernel picks. The raw-socket
helpers speak the protocol by hand, independent of the code under test, for
peers that misbehave on purpose or whose bytes a test checks exactly.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from waiting import wait_until
from wsstack.options import Options
from wsstack.sync import Context, Server, WebSocket
from wsstack.sync.reactor import Reactor

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
STEP = 10.0  # the timeout of any single blocking step

Message = str | bytes

T = TypeVar("T")


def echo_server(options: Options | None = None, **kwargs: Any) -> Server:
    """A server whose /ws sends every message back; a plain GET there gets 400."""
    server = Server(options, **kwargs)

    @server.get("/ws")
    def echo(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.response.status = 400
            ctx.response.body = "upgrade required"
            return
        ws = ctx.upgrade_to_websocket()
        for message in ws:
            ws.send(message)

    return server


@contextmanager
def serving(server: Server, host: str = "127.0.0.1") -> Iterator[str]:
    """Listen on a free port; yield the ws:// URL of /ws; shut down."""
    server.listen(0, host)
    try:
        yield f"ws://{host}:{server.port}/ws"
    finally:
        server.shutdown(timeout=5)


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def raw_connection(port: int, request: bytes = HANDSHAKE) -> socket.socket:
    """A plain socket that sent ``request`` and, for an upgrade, read the 101 head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
    sock.sendall(request)
    if request is HANDSHAKE:
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the peer closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def raw_http(port: int, request: bytes) -> bytes:
    """The whole answer to ``request`` on a connection of its own."""
    with raw_connection(port, request) as sock:
        return read_all(sock)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame: (first byte, payload)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    first, length = exactly(2)
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return first, exactly(length)


def only_connection(server: Server) -> WebSocket:
    """The server's one open WebSocket, once it has one."""
    wait_until(lambda: len(server.connections) == 1, STEP)
    (ws,) = list(server.connections)
    return ws


@dataclass(frozen=True)
class TLSContexts:
    """A server context with a certificate for localhost and 127.0.0.1, and a client context that trusts it."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def tls_contexts() -> TLSContexts:
    """Contexts signed by a new throwaway authority (trustme), unknown to the system's trust store."""
    import trustme

    authority = trustme.CA()
    cert = authority.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return TLSContexts(server_context, client_context)


def on_io_thread(reactor: Reactor, function: Callable[..., T], *args: Any) -> T:
    """Run ``function(*args)`` on the reactor's thread (what only that thread may call) and return its result."""
    result: Future[T] = Future()

    def call() -> None:
        try:
            result.set_result(function(*args))
        except BaseException as exc:
            result.set_exception(exc)

    reactor.call_soon(call)
    return result.result(STEP)
