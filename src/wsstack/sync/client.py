"""The blocking client: ``ws = connect(url)`` or ``with connect(url) as ws``.

The opening handshake runs on the caller's thread with plain blocking socket
calls, bounded by ``Options.open_timeout``. Once open, the socket joins the
process's client I/O thread: one thread reads for every client connection,
so a program with many of them does not pay a reader thread each.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Sequence

from ..connection import ClientConnection
from ..events import Event, HandshakeComplete, HandshakeFailed
from ..handshake import parse_ws_url
from ..options import Options
from .connection import WebSocket
from .reactor import Reactor
from .transport import Transport

__all__ = ["connect"]

_reactor: Reactor | None = None
_reactor_lock = threading.Lock()


def _client_reactor() -> Reactor:
    """The shared client I/O thread, started on first use."""
    global _reactor
    with _reactor_lock:
        if _reactor is None or not _reactor.alive:
            _reactor = Reactor("wsstack-client-io")
            _reactor.start()
        return _reactor


def connect(
    url: str,
    *,
    options: Options | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    origin: str | None = None,
    ssl: ssl_module.SSLContext | None = None,
) -> WebSocket:
    """Open a client connection to a ``ws://`` or ``wss://`` URL and return it once open.

    Use the result directly or as a context manager (``with connect(url) as
    ws:`` closes it on exit). ``ssl`` defaults to the system's trust store for
    ``wss://``. Raises ``HandshakeError`` (``InvalidHandshake`` with the
    server's status) when the server refuses, ``TimeoutError`` after
    ``open_timeout``, ``OSError`` when the server cannot be reached.
    """
    options = options if options is not None else Options()
    secure, host, port, _ = parse_ws_url(url)
    core = ClientConnection(url, options, subprotocols=subprotocols, headers=headers, origin=origin)
    # As on the server: replies to messages before a peer's error go out before the close.
    core.hold_failures = True
    timeout = options.open_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            context = ssl if ssl is not None else ssl_module.create_default_context()
            sock.settimeout(_remaining(deadline))
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.settimeout(_remaining(deadline))
        sock.sendall(core.data_to_send())
        events = _handshake(sock, core, deadline)
        sock.setblocking(False)
        reactor = _client_reactor()
        transport = Transport(sock, reactor, None, close_timeout=options.close_timeout)  # type: ignore[arg-type]
        ws = WebSocket(core, transport)
        transport.protocol = ws
        # Frames that followed the 101 in the same read.
        ws.opened(events)
    except BaseException:
        sock.close()
        raise
    reactor.call_soon(ws.start)
    return ws


def _handshake(sock: socket.socket, core: ClientConnection, deadline: float | None) -> list[Event]:
    """Read until the server's answer is complete; the events that came after it."""
    while True:
        sock.settimeout(_remaining(deadline))
        core.receive_data(sock.recv(65536))
        events = core.events()
        for index, event in enumerate(events):
            if isinstance(event, HandshakeComplete):
                return events[index + 1 :]
            if isinstance(event, HandshakeFailed):
                raise event.error


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the opening handshake timed out")
    return remaining
