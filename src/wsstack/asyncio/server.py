"""The asyncio HTTP/1.1 server with routes that can upgrade a request to a WebSocket."""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..accepting import accept_batch
from ..connection import State
from ..errors import InvalidState
from ..http11 import Request, Response
from ..options import Options
from ..routing import RequestContext, RoutedServer, check_port
from ..session import ACCEPT_RETRY, AcceptFailures, HTTPSession
from ..workers import supervise
from . import tls
from .connection import WebSocket
from .scratch import scratch

__all__ = ["Server", "Context"]

logger = logging.getLogger("wsstack")

Handler = Callable[["Context"], Awaitable[None] | None]


class Context(RequestContext):
    """The request context of the asyncio server: the seed's ``http::request_context``."""

    def __init__(self, request: Request, protocol: _HTTPProtocol) -> None:
        super().__init__(request)
        self._protocol = protocol
        self.websocket: WebSocket | None = None

    async def upgrade_to_websocket(
        self, options: Options | None = None, *, subprotocol: str | None = None, **overrides: Any
    ) -> WebSocket:
        """Answer 101 and return the connection.

        The connection runs with the server's options, changed only where
        this route says so: by keyword (``upgrade_to_websocket(enable_compression=True)``),
        or by the fields of ``options`` that differ from ``Options()``'s defaults
        (the seed's ``upgrade_to_websocket(opts)``); see ``Options.merge``.
        ``subprotocol`` must be one the client offered (``offered_subprotocols()``).

        Raises ``HandshakeError`` (after answering with its HTTP status) when
        the request is not a valid upgrade, or when the server reached
        ``max_connections`` or began shutting down while this handler ran
        (past the limit already, the request is answered 503 before any
        handler runs). Raises ``ValueError`` or ``TypeError``, with nothing
        answered, for a subprotocol the client did not offer or an impossible
        option: the handler fails and the server answers 500 and logs it.
        """
        if self.websocket is not None:
            raise InvalidState("this request was already upgraded")
        self.websocket = self._protocol.upgrade(options, subprotocol, overrides)
        return self.websocket


class _HTTPProtocol(asyncio.BufferedProtocol):
    """One TCP connection: HTTP requests one at a time (``HTTPSession``), then possibly a WebSocket.

    The transport reads into the thread's scratch buffer (``scratch``: no
    256 KiB allocation per read); TLS hands over its plaintext through
    ``data_received``.
    """

    __slots__ = ("server", "loop", "http", "core", "transport", "ws", "task", "timer")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.http = HTTPSession(server)
        self.core = self.http.core
        self.transport: asyncio.Transport | None = None
        self.ws: WebSocket | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; only their methods matter.
        self.transport = cast(asyncio.Transport, transport)
        self.server._protocols.add(self)
        self._arm_timer()

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
        self._process()

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._protocols.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.ws is not None:
            self.ws.connection_lost()

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws.pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws.resume_writing()

    # -- HTTP

    def _process(self) -> None:
        request = self.http.next_request()
        self._write(self.core.data_to_send())
        if request is not None:
            self._start(request)
        elif self.core.state is State.CLOSED and self.ws is None:
            self._close()

    def _start(self, request: Request) -> None:
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # One request at a time: what the client pipelines waits in the kernel, not in memory.
        self.transport.pause_reading()
        self.task = self.loop.create_task(self._handle(request))
        self.server._tasks.add(self.task)

    async def _handle(self, request: Request) -> None:
        # The task leaves the server's set itself: a done callback would cost
        # each connection a bound method and a copy of the context, 130 bytes
        # for as long as it lives. (A task cancelled before it first ran never
        # gets here: Server.close() forgets the ones it cancels.)
        task = cast("asyncio.Task[None]", asyncio.current_task())
        try:
            handler, refusal, keep_alive = self.http.route(request)
            if handler is None:
                self._respond(refusal, keep_alive)
                return
            context = Context(request, self)
            error: Exception | None = None
            try:
                result = handler(context)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                error = exc
            outcome = self.http.outcome(request, context.websocket is not None, context.response, error)
            if isinstance(outcome, Response):
                self._respond(outcome)
            elif outcome is not None and context.websocket is not None:
                await context.websocket.close(*outcome)
        finally:
            self.server._tasks.discard(task)

    def _respond(self, response: Response | None, keep_alive: bool | None = None) -> None:
        """Send a plain HTTP answer, then read the next request or close."""
        close = None if response is None else self.http.respond(response, keep_alive)
        if close is None:
            return
        self._write(self.core.data_to_send())
        if close:
            self._close()
            return
        assert self.transport is not None
        self.transport.resume_reading()
        self._arm_timer()
        # A pipelined request may already be parsed.
        self._process()

    def upgrade(self, options: Options | None, subprotocol: str | None, overrides: dict[str, Any]) -> WebSocket:
        refusal = self.http.upgrade(options, subprotocol, overrides)
        if refusal is not None:
            self._write(self.core.data_to_send())
            self._close()
            raise refusal
        assert self.transport is not None
        connections = self.server.connections
        ws = self.ws = WebSocket(self.core, self.transport, self.loop, on_close=self.server._forget)
        connections.add(ws)
        self.transport.resume_reading()
        ws.opened()
        return ws

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _arm_timer(self) -> None:
        timeout = self.server.options.open_timeout
        if timeout is not None:
            self.timer = self.loop.call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        """No complete request in time (slowloris, or an idle keep-alive connection)."""
        self.timer = None
        idle = self.ws is None and (self.task is None or self.task.done())
        if idle and self.transport is not None:
            self.transport.abort()


class Server(RoutedServer[Handler]):
    """Routes by path; a route's handler answers plain HTTP or upgrades to a WebSocket.

    See ``RoutedServer`` for ``max_connections`` and ``allowed_origins``.
    """

    def __init__(self, options: Options | None = None, **settings: Any) -> None:
        """``settings``: ``max_connections``, ``allowed_origins``, ``ssl``, ``shutdown_timeout``.

        See ``RoutedServer`` for each.
        """
        super().__init__(options, **settings)
        self.connections: set[WebSocket] = set()
        #: Every connection's ``on_close``: one bound method for all, not one each.
        self._forget = self.connections.discard
        self._protocols: set[_HTTPProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: _Listener | None = None
        #: The port the workers share, in the supervisor of ``run(workers=N)``, which does not listen itself.
        self._workers_port: int | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop, for handlers that schedule work of their own."""
        return asyncio.get_running_loop()

    @property
    def port(self) -> int:
        """The port actually bound (useful after ``listen(0)``); the workers' port in ``run(workers=N)``."""
        if self._listener is None or self._listener.closed:
            if self._workers_port is not None:
                return self._workers_port
            raise InvalidState("the server is not listening")
        return int(self._listener.sockets[0].getsockname()[1])

    async def listen(
        self, port: int = 8080, host: str | None = "127.0.0.1", *, backlog: int = 1024, reuse_port: bool = False
    ) -> None:
        """Start accepting connections; returns once the socket is bound.

        ``ValueError`` for a port outside 0-65535, which uvloop would otherwise
        take modulo 65536 and bind silently elsewhere. ``reuse_port`` sets
        ``SO_REUSEPORT``, so that several processes listen on one port (as
        ``run(workers=N)`` does).
        """
        check_port(port)
        sockets = await _bind(host, port, backlog, reuse_port)
        self.closing = False
        self._listener = listener = _Listener(self, sockets)
        try:
            await listener.start()
        except BaseException:
            listener.close()
            raise

    async def serve_forever(self) -> None:
        """Serve until cancelled or closed (after ``listen()``); ``run()`` does both in one call.

        Cancelled, it stops accepting (as ``asyncio.Server.serve_forever``
        does); the connections stay open until ``close()``.
        """
        if self._listener is None:
            raise InvalidState("call listen() first")
        try:
            await asyncio.shield(self._listener.done)
        except asyncio.CancelledError:
            self._listener.close()
            raise

    async def close(self, timeout: float | None = None) -> None:
        """Graceful shutdown: stop accepting, close WebSockets with 1001, wait for handlers."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        self.closing = True
        if self._listener is not None:
            self._listener.close()
        for protocol in list(self._protocols):
            if protocol.ws is None and (protocol.task is None or protocol.task.done()):
                protocol._close()
        closing = [asyncio.ensure_future(ws.close(1001, "server shutting down")) for ws in list(self.connections)]
        pending = [*closing, *self._tasks]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            self._tasks.difference_update(late)
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.abort()
        if self._listener is not None:
            await self._listener.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def run(
        self,
        port: int = 8080,
        host: str | None = "127.0.0.1",
        *,
        loop: str = "auto",
        workers: int | None = None,
        on_listening: Callable[[], object] | None = None,
    ) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully.

        ``on_listening`` is called once the socket is bound, on the loop: the
        place to announce ``self.port`` when it was 0 (the command line's demo
        prints the address to open there).

        ``loop="auto"`` runs on uvloop when it is installed (``pip install
        wsstack[uvloop]``), which measured 1.6x the round trips per second of
        the default loop for small messages (benchmarks/echo_e2e.py);
        ``"asyncio"`` forces the default loop, ``"uvloop"`` requires uvloop.
        (On Python 3.10, which lacks ``asyncio.Runner``, it is the default loop.)

        ``workers=N`` serves from N processes (0: one per CPU), each with its
        own loop, on one port shared through ``SO_REUSEPORT`` (Linux only,
        else ``WorkerError``); this process supervises them, restarts one that
        dies and stops them all gracefully on SIGINT or SIGTERM
        (``wsstack.workers``). Call it from the main thread, before starting
        any other thread or a loop. Then
        ``on_listening`` is called in the supervisor once every worker
        listens, and ``self.port`` there is the shared port. Workers do not
        share memory: ``self.connections`` and anything a handler keeps are per process.
        """
        check_port(port)
        factory = _loop_factory(loop)
        if workers is None:
            self._run_one(port, host, factory, on_listening)
            return

        def serve(shared: int, ready: Callable[[], None]) -> None:
            self._run_one(shared, host, factory, ready, reuse_port=True)

        def listening(shared: int) -> None:
            self._workers_port = shared
            if on_listening is not None:
                on_listening()

        supervise(serve, port, host, workers, shutdown_timeout=self.shutdown_timeout, on_listening=listening)

    def _run_one(
        self,
        port: int,
        host: str | None,
        factory: Callable[[], asyncio.AbstractEventLoop] | None,
        on_listening: Callable[[], object] | None,
        reuse_port: bool = False,
    ) -> None:
        """``run()`` in one process: the whole server, or one worker (``reuse_port``; the supervisor logs for all)."""

        async def main() -> None:
            await self.listen(port, host, reuse_port=reuse_port)
            if not reuse_port:
                logger.info("listening on %s:%d", host or "*", self.port)
            if on_listening is not None:
                on_listening()
            stop: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def request_stop() -> None:
                if not stop.done():
                    stop.set_result(None)

            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, request_stop)
            await stop
            await self.close()

        if factory is None or sys.version_info < (3, 11):
            asyncio.run(main())  # Python 3.10 has no asyncio.Runner: the default loop
            return
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())


async def _bind(host: str | None, port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (``None``: all), as ``loop.create_server`` binds.

    Except that port 0 means one free port for all of them (``create_server``
    gives each address its own, so ``Server.port`` named only the first and
    an IPv6 client of "localhost" could reach another program): the first
    address takes a free port, the others the same one, and when that one
    is taken on another address the whole set tries again.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned no address")
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port is not supported on this system")
    attempts = 0
    while True:
        try:
            return _bind_all(host, list(dict.fromkeys(infos)), port, backlog, reuse_port)
        except _PortTakenElsewhere:
            attempts += 1
            if attempts == _FREE_PORT_ATTEMPTS:
                raise OSError(errno.EADDRINUSE, f"no port is free on every address of {host!r}") from None


#: Tries at a port free on every address, for port 0 on a host with several.
_FREE_PORT_ATTEMPTS = 10


class _PortTakenElsewhere(Exception):
    """The free port the first address got is in use on another."""


def _bind_all(host: str | None, infos: list[Any], port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this system has no support for (IPv6 turned off): asyncio skips it too
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does: not one dual-stack socket for both.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                if port == 0 and len(sockets) > 1 and exc.errno == errno.EADDRINUSE:
                    raise _PortTakenElsewhere from None
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {exc.strerror}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
        if not sockets:
            raise OSError(f"no socket can be made for the addresses of {host!r}")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Listener:
    """The server's listening sockets, accepted from by the server itself rather than by ``loop.create_server``.

    Because of what the loops do when ``accept()`` fails for want of
    descriptors, which a server holding many connections meets sooner or
    later: asyncio's loop logs an ERROR with a traceback for every failed
    attempt, up to ``backlog`` of them per readiness and again each second
    (298 in 4 s, measured with 60 clients against a limit of 40 descriptors);
    uvloop's (libuv) accepts every waiting connection and closes it at once,
    saying nothing. Here the server stops accepting for ``ACCEPT_RETRY``
    seconds at a time and logs once (``wsstack.session.accept``), and the
    clients waiting in the backlog are served once descriptors are free.

    Each connection gets a task until its transport is made (and its TLS
    handshake done), as in asyncio's own accept; on uvloop that task is new,
    and costs nothing measurable: 3,000 handshakes from 100 clients at a
    time ran at 0.97 and 1.03 times the rate of ``create_server`` on the
    default loop, 1.03 and 1.04 times on uvloop (two rounds, one run).
    """

    def __init__(self, server: Server, sockets: list[socket.socket]) -> None:
        self.server = server
        self.sockets = sockets
        self.loop = asyncio.get_running_loop()
        self.failures = AcceptFailures()
        #: Sockets not watched for a while, because accept() failed for want of a resource.
        self.paused: dict[socket.socket, asyncio.TimerHandle] = {}
        #: Connections being set up (a TLS handshake, mostly).
        self.starting: set[asyncio.Task[None]] = set()
        #: Their sockets, until their task runs and hands them to the loop.
        self.unstarted: set[socket.socket] = set()
        #: Loops that cannot watch a descriptor (Windows' proactor) accept by themselves.
        self.fallback: list[asyncio.Server] = []
        self.closed = False
        self.done: asyncio.Future[None] = self.loop.create_future()

    async def start(self) -> None:
        for sock in self.sockets:
            try:
                self.loop.add_reader(sock.fileno(), self._accept, sock)
            except NotImplementedError:
                self.fallback.append(
                    await self.loop.create_server(lambda: _HTTPProtocol(self.server), sock=sock, ssl=self.server.ssl)
                )

    def _accept(self, sock: socket.socket) -> None:
        accepted, pause = accept_batch(sock, self.failures, self.loop.time, others_paused=bool(self.paused))
        for conn in accepted:
            self.unstarted.add(conn)
            task = self.loop.create_task(self._start_connection(conn))
            self.starting.add(task)
            task.add_done_callback(functools.partial(self._started, conn))
        if pause:
            self.loop.remove_reader(sock.fileno())
            self.paused[sock] = self.loop.call_later(ACCEPT_RETRY, self._resume, sock)

    def _started(self, conn: socket.socket, task: asyncio.Task[None]) -> None:
        self.starting.discard(task)
        if conn in self.unstarted:
            # Cancelled by close() before it ran: nothing else owns the socket. (Once it has run,
            # the loop's transport does, and closes it, on uvloop after this callback perhaps.)
            self.unstarted.discard(conn)
            conn.close()

    def _resume(self, sock: socket.socket) -> None:
        """Watch the socket again, and try at once: with nobody waiting it would not turn readable."""
        del self.paused[sock]
        self.loop.add_reader(sock.fileno(), self._accept, sock)
        self._accept(sock)

    async def _start_connection(self, conn: socket.socket) -> None:
        self.unstarted.discard(conn)
        server = self.server
        try:
            if server.ssl is not None and tls.own_tls(self.loop):
                await tls.accept(
                    self.loop, conn, server.ssl, lambda: _HTTPProtocol(server), server.options.open_timeout
                )
            else:
                await self.loop.connect_accepted_socket(lambda: _HTTPProtocol(server), conn, ssl=server.ssl)
        except OSError as exc:  # ssl.SSLError included: a reset, a bad certificate, plain HTTP on a TLS port
            logger.debug("%s failed: %s", "TLS handshake" if server.ssl else "connection setup", exc)

    def close(self) -> None:
        """Stop accepting; connections still being set up are dropped."""
        if self.closed:
            return
        self.closed = True
        for server in self.fallback:
            server.close()
        for sock in self.sockets:
            timer = self.paused.pop(sock, None)
            if timer is not None:
                timer.cancel()
            elif not self.fallback:
                self.loop.remove_reader(sock.fileno())
            sock.close()
        for task in self.starting:
            task.cancel()
        self.done.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.gather(
            *self.starting, *(server.wait_closed() for server in self.fallback), return_exceptions=True
        )


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    if name not in ("auto", "uvloop"):
        raise ValueError(f"loop must be 'auto', 'asyncio' or 'uvloop', not {name!r}")
    return uvloop.new_event_loop
