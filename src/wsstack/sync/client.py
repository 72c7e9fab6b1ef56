"""The blocking client: ``ws = connect(url)``, ``with connect(url) as ws``, ``for ws in reconnect(url)``.

The opening handshake runs on the caller's thread with plain blocking socket
calls, bounded by ``Options.open_timeout``. Once open, the socket joins the
process's client I/O thread: one thread reads for every client connection,
so a program with many of them does not pay a reader thread each.

The steps are ``wsstack.asyncio``'s client's, in the same order, and every
decision in them is ``wsstack.client_policy``'s. One difference in shape:
``connect()`` returns the open ``WebSocket`` itself (iterating over it gives
its messages), so the reconnecting loop has a name of its own, ``reconnect``,
where asyncio's is ``async for ws in connect(url)``.
"""

from __future__ import annotations

import os
import random
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from ..client_policy import (
    FROM_ENVIRONMENT,
    Backoff,
    HTTPTunnel,
    Phase,
    Proxy,
    ProxySetting,
    Reconnection,
    proxy_for,
    redirect_target,
    should_retry,
    socks_refusal,
    timeout_message,
)
from ..connection import ClientConnection
from ..errors import ConnectionClosed, HandshakeError
from ..events import Event, HandshakeComplete, HandshakeFailed
from ..handshake import parse_ws_url
from ..options import Options
from .connection import WebSocket
from .reactor import Reactor
from .transport import Transport

__all__ = ["connect", "reconnect"]

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
    proxy: ProxySetting = FROM_ENVIRONMENT,
    max_redirects: int = 10,
) -> WebSocket:
    """Open a client connection to a ``ws://`` or ``wss://`` URL and return it once open.

    Use the result directly or as a context manager (``with connect(url) as
    ws:`` closes it on exit). ``ssl`` defaults to the system's trust store for
    ``wss://``. ``proxy`` is read from ``https_proxy``/``http_proxy``/
    ``all_proxy``/``no_proxy`` by default; ``None`` connects directly; a URL
    (``http://user:pass@host:port``, ``socks5://...`` with the
    ``wsstack[socks]`` extra) is used for every host. Redirects (301, 302,
    303, 307, 308) are followed up to ``max_redirects`` times, never from
    wss:// to ws://.

    Raises ``InvalidHandshake`` when the server refuses (with its ``status``,
    ``headers`` and ``body``), ``ProxyError`` when the proxy does,
    ``TimeoutError`` (saying which step) after ``open_timeout``, ``OSError``
    when the server cannot be reached.
    """
    _check_max_redirects(max_redirects)
    options = options if options is not None else Options()
    proxy_for(url, proxy, {})  # a bad URL or proxy URL is a ValueError before any I/O
    hops = 0
    while True:
        try:
            return _open_once(url, options, subprotocols, headers, origin, ssl, proxy)
        except HandshakeError as exc:
            target = redirect_target(url, exc, hops, max_redirects)
            if target is None:
                raise
        url, hops = target, hops + 1


def reconnect(
    url: str,
    *,
    options: Options | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    origin: str | None = None,
    ssl: ssl_module.SSLContext | None = None,
    proxy: ProxySetting = FROM_ENVIRONMENT,
    max_redirects: int = 10,
    backoff: Backoff | None = None,
    retry_on: Callable[[BaseException], bool] = should_retry,
) -> Iterator[WebSocket]:
    """The reconnecting client: ``for ws in reconnect(url):`` gets a new connection each time round.

    Each connection is opened as ``connect()`` opens it (the same
    arguments); when the loop comes round again the previous one is closed
    if still open. Before each new attempt it waits as ``backoff`` says
    (exponential, with jitter); an attempt that fails is retried when
    ``retry_on(error)`` is true (by default: network errors, timeouts and
    5xx answers), otherwise its error ends the loop (a 4xx answer, a bad
    URL). asyncio's twin is ``async for ws in connect(url)``. A bad URL or
    proxy URL is a ValueError here, as from asyncio's ``connect(url)``,
    rather than at the first attempt.
    """
    proxy_for(url, proxy, {})
    _check_max_redirects(max_redirects)

    def attempt() -> WebSocket:
        return connect(
            url,
            options=options,
            subprotocols=subprotocols,
            headers=headers,
            origin=origin,
            ssl=ssl,
            proxy=proxy,
            max_redirects=max_redirects,
        )

    return _reconnecting(attempt, Reconnection(backoff if backoff is not None else Backoff(), retry_on, random.random))


def _reconnecting(attempt: Callable[[], WebSocket], reconnection: Reconnection) -> Iterator[WebSocket]:
    """The loop itself, the twin of asyncio's ``connect._reconnecting``."""
    while True:
        try:
            ws = attempt()
        except Exception as exc:
            delay = reconnection.failed(exc)
            if delay is None:
                raise
            time.sleep(delay)
            continue
        reconnection.opened(time.monotonic())
        yield ws
        if ws.is_open:
            ws.close()
        time.sleep(reconnection.lost(time.monotonic()))


def _open_once(
    url: str,
    options: Options,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    origin: str | None,
    ssl: ssl_module.SSLContext | None,
    proxy_setting: ProxySetting,
) -> WebSocket:
    secure, host, port, _ = parse_ws_url(url)
    proxy = proxy_for(url, proxy_setting, os.environ)
    core = ClientConnection(url, options, subprotocols=subprotocols, headers=headers, origin=origin)
    # As on the server: replies to messages before a peer's error go out before the close.
    core.hold_failures = True
    timeout = options.open_timeout
    deadline = None if timeout is None else time.monotonic() + timeout

    @contextmanager
    def step(phase: Phase, where: tuple[str, int]) -> Iterator[None]:
        """A blocking step within what is left of ``open_timeout``; a timeout names the step."""
        try:
            yield
        except TimeoutError:
            if timeout is None:
                raise
            raise TimeoutError(timeout_message(phase, timeout, *where)) from None

    sock: socket.socket | None = None
    try:
        if proxy is None:
            with step(Phase.TCP_CONNECT, (host, port)):
                sock = socket.create_connection((host, port), timeout=_remaining(deadline))
        elif proxy.is_socks:
            with step(Phase.PROXY_CONNECT, (proxy.host, proxy.port)):
                sock = _socks_connect(proxy, host, port, _remaining(deadline))
        else:
            where = (proxy.host, proxy.port)
            with step(Phase.PROXY_CONNECT, where):
                sock = socket.create_connection(where, timeout=_remaining(deadline))
            with step(Phase.PROXY_TUNNEL, where):
                _open_tunnel(sock, HTTPTunnel(proxy, host, port, options.http_limits), deadline)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            # TLS goes over the tunnel when there is one: the proxy sees only ciphertext.
            context = ssl if ssl is not None else ssl_module.create_default_context()
            with step(Phase.TLS_HANDSHAKE, (host, port)):
                sock.settimeout(_remaining(deadline))
                sock = context.wrap_socket(sock, server_hostname=host)
        with step(Phase.OPENING_HANDSHAKE, (host, port)):
            events = _handshake(sock, core, deadline)
        sock.setblocking(False)
        reactor = _client_reactor()
        transport = Transport(sock, reactor, None, close_timeout=options.close_timeout)  # type: ignore[arg-type]
        ws = WebSocket(core, transport)
        transport.protocol = ws
        # Frames that followed the 101 in the same read.
        ws.opened(events)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    reactor.call_soon(ws.start)
    return ws


def _handshake(sock: socket.socket, core: ClientConnection, deadline: float | None) -> list[Event]:
    """Send the request, read until the server's answer is complete; the events that came after it."""
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(core.data_to_send())
    except TimeoutError:
        raise
    except OSError as exc:
        raise _lost() from exc
    while True:
        try:
            sock.settimeout(_remaining(deadline))
            data = sock.recv(65536)
        except TimeoutError:
            if core.response is None:
                raise
            data = b""  # a refusal whose body was still coming: report it with the body so far
        except OSError as exc:
            raise _lost() from exc
        if not data and core.response is None:
            raise _lost()
        core.receive_data(data)
        events = core.events()
        for index, event in enumerate(events):
            if isinstance(event, HandshakeComplete):
                return events[index + 1 :]
            if isinstance(event, HandshakeFailed):
                raise event.error


def _check_max_redirects(max_redirects: int) -> None:
    if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
        raise ValueError(f"max_redirects must be an int >= 0, not {max_redirects!r}")


def _lost() -> ConnectionClosed:
    """The same error as asyncio's client, which learns of an EOF or a reset from ``connection_lost()``."""
    return ConnectionClosed(1006, "connection lost during the opening handshake")


def _open_tunnel(sock: socket.socket, tunnel: HTTPTunnel, deadline: float | None) -> None:
    """The CONNECT exchange on ``sock``; the server sends nothing before our request, so no read takes its bytes."""
    sock.settimeout(_remaining(deadline))
    sock.sendall(tunnel.data_to_send())
    while True:
        sock.settimeout(_remaining(deadline))
        if tunnel.receive_data(sock.recv(65536)):
            return


def _socks_connect(proxy: Proxy, host: str, port: int, timeout: float | None) -> socket.socket:
    """A socket through a SOCKS proxy (python-socks does the exchange within ``timeout``)."""
    try:
        import python_socks
        from python_socks.sync import Proxy as SocksProxy
    except ImportError:
        raise ImportError(f"{proxy!r} needs python-socks: pip install 'wsstack[socks]'") from None
    socks = SocksProxy.from_url(proxy.socks_url(), rdns=proxy.remote_dns)
    try:
        return socks.connect(host, port, timeout=timeout)
    except python_socks.ProxyError as exc:
        raise socks_refusal(proxy, str(exc), exc.error_code) from None


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("open_timeout ran out")
    return remaining
