"""The asyncio HTTP/1.1 server with routes that can upgrade a request to a WebSocket."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..connection import ServerConnection, State
from ..errors import ConnectionClosed, HandshakeError, InvalidHandshake, InvalidState
from ..events import RequestReceived
from ..http11 import Request, Response
from ..options import Options
from ..routing import RequestContext, RoutedServer, plain_response
from .connection import WebSocket

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
        self, options: Options | None = None, *, subprotocol: str | None = None
    ) -> WebSocket:
        """Answer 101 and return the connection.

        Raises ``HandshakeError`` (after answering with its HTTP status) when
        the request is not a valid upgrade or the server is at ``max_connections``.
        """
        if self.websocket is not None:
            raise InvalidState("this request was already upgraded")
        self.websocket = self._protocol.upgrade(options, subprotocol)
        return self.websocket


class _HTTPProtocol(asyncio.Protocol):
    """One TCP connection: HTTP requests one at a time, then possibly a WebSocket."""

    __slots__ = ("server", "loop", "core", "transport", "ws", "task", "timer")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.core = ServerConnection(server.options)
        # A peer's protocol error is answered after the handler has seen (and
        # possibly replied to) the messages that came before it.
        self.core.hold_failure_close = True
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

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is not None:
            ws._data_received(data)
            return
        self.core.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws._eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._protocols.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.ws is not None:
            self.ws._connection_lost(exc)

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws._pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws._resume_writing()

    # -- HTTP

    def _process(self) -> None:
        core = self.core
        for event in core.events():
            if isinstance(event, RequestReceived):
                self._start(event.request)
        self._write(core.data_to_send())
        if core.state is State.CLOSED and self.ws is None:
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
        self.task.add_done_callback(self.server._tasks.discard)

    async def _handle(self, request: Request) -> None:
        server = self.server
        handler, refusal = server.router.resolve(request.method, request.path)
        if handler is None:
            assert refusal is not None
            self._respond(refusal)
            return
        context = Context(request, self)
        if context.is_websocket_upgrade():
            refusal = server._refusal(request)
            if refusal is not None:
                self._respond(refusal, keep_alive=False)
                return
        try:
            result = handler(context)
            if inspect.isawaitable(result):
                await result
        except HandshakeError:
            return  # the upgrade already answered with the error status
        except ConnectionClosed as exc:
            # A send on this request's own connection after the peer closed it: a normal end.
            logger.debug("%s %s: connection closed under the handler (%s)", request.method, request.path, exc)
            return
        except Exception:
            logger.exception("handler for %s %s failed", request.method, request.path)
            if context.websocket is None:
                if self.core.state is State.CONNECTING:
                    self._respond(plain_response(500))
                return
            await context.websocket.close(1011, "internal error")
            return
        if context.websocket is None:
            self._respond(context.response.to_response())
        else:
            await context.websocket.close()

    def _respond(self, response: Response, keep_alive: bool | None = None) -> None:
        """Send a plain HTTP answer; a refused upgrade closes the connection (``keep_alive=False``)."""
        core = self.core
        if core.state is not State.CONNECTING or core.request is None:
            return
        if core.request.method == "HEAD":
            response.body = b""
        core.respond(response, keep_alive)
        self._write(core.data_to_send())
        if core.state is State.CLOSED or self.server._closing:
            self._close()
            return
        assert self.transport is not None
        self.transport.resume_reading()
        self._arm_timer()
        # A pipelined request may already be parsed.
        self._process()

    def upgrade(self, options: Options | None, subprotocol: str | None) -> WebSocket:
        server = self.server
        core = self.core
        if server._closing:
            self._respond(plain_response(503, "server shutting down"), keep_alive=False)
            raise HandshakeError("the server is shutting down", status=503)
        if server.max_connections is not None and len(server.connections) >= server.max_connections:
            self._respond(plain_response(503, "too many connections"), keep_alive=False)
            raise HandshakeError("the server is at max_connections", status=503)
        try:
            core.accept(subprotocol=subprotocol, options=options if options is not None else server.options)
        except InvalidHandshake as exc:
            self._respond(plain_response(exc.status, str(exc), exc.headers), keep_alive=False)
            raise
        assert self.transport is not None
        ws = WebSocket(core, self.transport, self.loop)
        self.ws = ws
        server.connections.add(ws)
        ws._on_close = server.connections.discard
        self.transport.resume_reading()
        # Frames that came with the request were parsed by accept().
        ws._dispatch(core.events())
        ws._flush()
        ws._after_events()
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
        if self.ws is None and (self.task is None or self.task.done()):
            if self.transport is not None:
                self.transport.abort()


class Server(RoutedServer[Handler]):
    """Routes by path; a route's handler answers plain HTTP or upgrades to a WebSocket.

    See ``RoutedServer`` for ``max_connections`` and ``allowed_origins``.
    """

    def __init__(self, options: Options | None = None, **settings: Any) -> None:
        """``settings``: ``max_connections``, ``allowed_origins``, ``ssl``, ``shutdown_timeout`` (see ``RoutedServer``)."""
        super().__init__(options, **settings)
        self.connections: set[WebSocket] = set()
        self._protocols: set[_HTTPProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._closing = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    @property
    def port(self) -> int:
        """The port actually bound (useful after ``listen(0)``)."""
        if self._server is None or not self._server.sockets:
            raise InvalidState("the server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def listen(self, port: int = 8080, host: str | None = "127.0.0.1", *, backlog: int = 1024) -> None:
        """Start accepting connections; returns once the socket is bound."""
        loop = asyncio.get_running_loop()
        self._closing = False
        self._server = await loop.create_server(
            lambda: _HTTPProtocol(self), host, port, ssl=self.ssl, backlog=backlog, reuse_address=True
        )

    async def serve_forever(self) -> None:
        if self._server is None:
            raise InvalidState("call listen() first")
        await self._server.serve_forever()

    async def close(self, timeout: float | None = None) -> None:
        """Graceful shutdown: stop accepting, close WebSockets with 1001, wait for handlers."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        self._closing = True
        if self._server is not None:
            self._server.close()
        for protocol in list(self._protocols):
            if protocol.ws is None and (protocol.task is None or protocol.task.done()):
                protocol._close()
        closing = [asyncio.ensure_future(ws.close(1001, "server shutting down")) for ws in list(self.connections)]
        pending = [*closing, *self._tasks]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def run(self, port: int = 8080, host: str | None = "127.0.0.1", *, loop: str = "auto") -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully.

        ``loop="auto"`` runs on uvloop when it is installed (``pip install
        wsstack[uvloop]``), which measured 1.6x the round trips per second of
        the default loop for small messages (benchmarks/echo_e2e.py);
        ``"asyncio"`` forces the default loop, ``"uvloop"`` requires uvloop.
        (On Python 3.10, which lacks ``asyncio.Runner``, it is the default loop.)
        """

        async def main() -> None:
            await self.listen(port, host)
            logger.info("listening on %s:%d", host or "*", self.port)
            stop: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
            await stop
            await self.close()

        factory = _loop_factory(loop)
        if factory is None or sys.version_info < (3, 11):
            asyncio.run(main())  # Python 3.10 has no asyncio.Runner: the default loop
            return
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())


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
