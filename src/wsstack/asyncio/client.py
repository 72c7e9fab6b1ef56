"""The asyncio client: ``await connect(url)``, ``async with connect(url) as ws``, ``async for ws in connect(url)``.

Every decision (which proxy, whether to follow a redirect, whether and when
to retry, what a timeout says) is ``wsstack.client_policy``'s; this module
does the I/O: resolve and connect, open the proxy's tunnel, TLS, the opening
handshake, each step under one ``open_timeout`` deadline. ``wsstack.sync``'s
client does the same steps in the same order with blocking calls.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar, cast

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
from ..events import HandshakeComplete, HandshakeFailed
from ..handshake import parse_ws_url
from ..options import Options
from . import tls
from .connection import WebSocket
from .scratch import scratch

__all__ = ["connect"]

T = TypeVar("T")


class _ClientProtocol(asyncio.BufferedProtocol):
    """The client's connection: the opening handshake, then the WebSocket; reads as the server's do."""

    def __init__(self, core: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.core = core
        self.loop = loop
        self.ws: WebSocket | None = None
        self.opened: asyncio.Future[WebSocket] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; only their methods matter.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.core.data_to_send())

    def get_buffer(self, sizehint: int) -> memoryview:
        return scratch()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(scratch()[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        ws = self.ws
        if ws is not None:
            ws.data_received(data)
            return
        self.core.receive_data(data)
        self._handshake_events()

    def end_of_refusal(self) -> None:
        """The stream ended (or the time for it did) while a refusal's body was read: report the refusal."""
        if self.ws is None and self.core.response is not None and not self.opened.done():
            self.core.receive_data(b"")
            self._handshake_events()

    def _handshake_events(self) -> None:
        core = self.core
        events = core.events()
        for index, event in enumerate(events):
            if isinstance(event, HandshakeComplete):
                assert self.transport is not None
                ws = self.ws = WebSocket(core, self.transport, self.loop)
                ws.opened(events[index + 1 :])
                if not self.opened.done():
                    self.opened.set_result(ws)
                return
            if isinstance(event, HandshakeFailed):
                if not self.opened.done():
                    self.opened.set_exception(event.error)
                assert self.transport is not None
                self.transport.close()
                return

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.eof_received()
        else:
            self.end_of_refusal()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ws is not None:
            self.ws.connection_lost()
            return
        self.end_of_refusal()
        if not self.opened.done():
            error = ConnectionClosed(1006, "connection lost during the opening handshake")
            error.__cause__ = exc
            self.opened.set_exception(error)

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws.pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws.resume_writing()


class connect:
    """Open a client connection to a ``ws://`` or ``wss://`` URL.

    Three ways to use it:

    * ``ws = await connect(url)``: one connection;
    * ``async with connect(url) as ws:``: one connection, closed on exit;
    * ``async for ws in connect(url):``: a connection, and a new one each time
      the loop comes round again (the previous one is closed if still open):
      the reconnecting client. Before each new attempt it waits as
      ``backoff`` says (exponential, with jitter); an attempt that fails is
      retried when ``retry_on(error)`` is true (by default: network errors,
      timeouts and 5xx answers), otherwise its error ends the loop (a 4xx
      answer, a bad URL).

    ``ssl`` defaults to the system's trust store for ``wss://``. ``proxy``
    is read from ``https_proxy``/``http_proxy``/``all_proxy``/``no_proxy`` by
    default (``wsstack.client_policy.proxies`` has the rules); ``None``
    connects directly; a URL (``http://user:pass@host:port``,
    ``socks5://...``, the latter with the ``wsstack[socks]`` extra) is used
    for every host. Redirects (301, 302, 303, 307, 308) are followed up to
    ``max_redirects`` times, never from wss:// to ws://.

    Raises ``InvalidHandshake`` when the server refuses (with its ``status``,
    ``headers`` and ``body``), ``ProxyError`` when the proxy does,
    ``TimeoutError`` (saying which step) after ``open_timeout``, ``OSError``
    when the server cannot be reached.
    """

    def __init__(
        self,
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
    ) -> None:
        if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
            raise ValueError(f"max_redirects must be an int >= 0, not {max_redirects!r}")
        self.url = url
        self.options = options if options is not None else Options()
        self.subprotocols = subprotocols
        self.headers = headers
        self.origin = origin
        self.ssl = ssl
        self.proxy = proxy
        self.max_redirects = max_redirects
        self.backoff = backoff if backoff is not None else Backoff()
        self.retry_on = retry_on
        self._ws: WebSocket | None = None
        # A proxy URL or a URL that cannot work is a ValueError here, before any I/O.
        proxy_for(url, proxy, {})

    async def _open(self) -> WebSocket:
        """Connect, following redirects: each hop is a new connection (through a proxy if one applies)."""
        url, hops = self.url, 0
        while True:
            try:
                return await self._open_once(url)
            except HandshakeError as exc:
                target = redirect_target(url, exc, hops, self.max_redirects)
                if target is None:
                    raise
            url, hops = target, hops + 1

    async def _open_once(self, url: str) -> WebSocket:
        secure, host, port, _ = parse_ws_url(url)
        proxy = proxy_for(url, self.proxy, os.environ)
        core = ClientConnection(
            url, self.options, subprotocols=self.subprotocols, headers=self.headers, origin=self.origin
        )
        # As on the server: replies to messages before a peer's error go out before the close.
        core.hold_failures = True
        context = self.ssl
        if secure and context is None:
            context = ssl_module.create_default_context()
        loop = asyncio.get_running_loop()
        protocol = _ClientProtocol(core, loop)
        timeout = self.options.open_timeout
        deadline = None if timeout is None else loop.time() + timeout

        async def step(awaitable: Awaitable[T], phase: Phase, where: tuple[str, int]) -> T:
            """``awaitable`` within what is left of ``open_timeout``; a timeout names the step."""
            if deadline is None or timeout is None:
                return await awaitable
            try:
                return await asyncio.wait_for(awaitable, max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise TimeoutError(timeout_message(phase, timeout, *where)) from None

        sock: socket.socket | None = None
        try:
            if proxy is None:
                sock = await step(_tcp_connect(loop, host, port), Phase.TCP_CONNECT, (host, port))
            elif proxy.is_socks:
                sock = await step(_socks_connect(proxy, host, port), Phase.PROXY_CONNECT, (proxy.host, proxy.port))
            else:
                where = (proxy.host, proxy.port)
                sock = await step(_tcp_connect(loop, proxy.host, proxy.port), Phase.PROXY_CONNECT, where)
                tunnel = HTTPTunnel(proxy, host, port, self.options.http_limits)
                await step(_open_tunnel(loop, sock, tunnel), Phase.PROXY_TUNNEL, where)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # TLS goes over the tunnel when there is one: the proxy sees only ciphertext.
            if secure and context is not None and tls.own_tls(loop):
                owned, sock = sock, None  # tls.connect's now, closed by it if the handshake fails
                await step(tls.connect(loop, owned, context, host, lambda: protocol), Phase.TLS_HANDSHAKE, (host, port))
            else:
                connecting = loop.create_connection(
                    lambda: protocol,
                    sock=sock,
                    ssl=context if secure else None,
                    server_hostname=host if secure else None,
                )
                await step(connecting, Phase.TLS_HANDSHAKE, (host, port))
                sock = None  # the transport's now
            try:
                return await step(asyncio.shield(protocol.opened), Phase.OPENING_HANDSHAKE, (host, port))
            except TimeoutError:
                # A refusal whose body was still coming: report it (raise it) with the body so far.
                protocol.end_of_refusal()
                if not protocol.opened.done():
                    raise
                return protocol.opened.result()
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            elif sock is not None:
                sock.close()
            if not protocol.opened.done():
                protocol.opened.cancel()
            raise

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._open().__await__()

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    def __aiter__(self) -> AsyncIterator[WebSocket]:
        return self._reconnecting()

    async def _reconnecting(self) -> AsyncIterator[WebSocket]:
        """The reconnecting client; ``wsstack.sync.reconnect`` is its blocking twin."""
        reconnection = Reconnection(self.backoff, self.retry_on, random.random)
        loop = asyncio.get_running_loop()
        while True:
            try:
                ws = await self._open()
            except Exception as exc:
                delay = reconnection.failed(exc)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            reconnection.opened(loop.time())
            yield ws
            if ws.is_open:
                await ws.close()
            await asyncio.sleep(reconnection.lost(loop.time()))


async def _tcp_connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected non-blocking socket to the first of ``host``'s addresses that accepts."""
    error: OSError | None = None
    for family, kind, proto, _, address in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error if error is not None else OSError(f"no address to connect to for {host}")


async def _open_tunnel(loop: asyncio.AbstractEventLoop, sock: socket.socket, tunnel: HTTPTunnel) -> None:
    """The CONNECT exchange on ``sock``; the server sends nothing before our request, so no read takes its bytes."""
    await loop.sock_sendall(sock, tunnel.data_to_send())
    while not tunnel.receive_data(await loop.sock_recv(sock, 65536)):
        pass


async def _socks_connect(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A socket through a SOCKS proxy (python-socks does the exchange; ``open_timeout`` bounds it)."""
    try:
        import python_socks
        from python_socks.async_.asyncio import Proxy as SocksProxy
    except ImportError:
        raise ImportError(f"{proxy!r} needs python-socks: pip install 'wsstack[socks]'") from None
    socks = SocksProxy.from_url(proxy.socks_url(), rdns=proxy.remote_dns)
    try:
        sock = await socks.connect(host, port, timeout=_NO_LIMIT)
    except python_socks.ProxyError as exc:
        raise socks_refusal(proxy, str(exc), exc.error_code) from None
    sock.setblocking(False)
    return sock


# python-socks has a timeout of its own (60 s by default); ``open_timeout`` is the one that counts.
_NO_LIMIT = 1e9
