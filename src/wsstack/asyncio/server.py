"""The asyncio HTTP/1.1 server with routes that can upgrade a request to a WebSocket."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..connection import State
from ..errors import InvalidState
from ..http11 import Request, Response
from ..options import Options
from ..routing import RequestContext, RoutedServer
from ..session import HTTPSession
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
    """One TCP connection: HTTP requests one at a time (``HTTPSession``), then possibly a WebSocket."""

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

    def data_received(self, data: bytes) -> None:
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
        self.task.add_done_callback(self.server._tasks.discard)

    async def _handle(self, request: Request) -> None:
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

    def upgrade(self, options: Options | None, subprotocol: str | None) -> WebSocket:
        refusal = self.http.upgrade(options, subprotocol)
        if refusal is not None:
            self._write(self.core.data_to_send())
            self._close()
            raise refusal
        assert self.transport is not None
        connections = self.server.connections
        ws = self.ws = WebSocket(self.core, self.transport, self.loop, on_close=connections.discard)
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
        self._protocols: set[_HTTPProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

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
        self.closing = False
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
        self.closing = True
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

            def request_stop() -> None:
                if not stop.done():
                    stop.set_result(None)

            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, request_stop)
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
