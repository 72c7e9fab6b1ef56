"""The threaded HTTP/1.1 server with routes that can upgrade a request to a WebSocket.

The server's I/O thread accepts connections and reads request heads without
blocking, so a client that sends its request slowly (or never) holds no
thread, only a timer (``Options.open_timeout``). Once a request is complete
a handler thread runs the route; if it upgrades, the same thread goes on as
the connection's application thread and the I/O thread keeps reading for it.
"""

from __future__ import annotations

import _thread
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..connection import State
from ..errors import InvalidState
from ..http11 import Request, Response
from ..options import Options
from ..routing import RequestContext, RoutedServer
from ..session import HTTPSession
from .connection import WebSocket
from .reactor import IN, Reactor, Timer
from .transport import Transport

__all__ = ["Server", "Context"]

logger = logging.getLogger("wsstack")

Handler = Callable[["Context"], None]

#: Seconds shutdown() waits, after aborting them, for the last WebSockets to be gone.
_ABORT_WAIT = 1.0

#: Connections taken from the listening socket per readiness event, so a
#: burst of new clients cannot starve the ones already connected.
_ACCEPT_BATCH = 64


class Context(RequestContext):
    """The request context of the sync server: the seed's ``http::request_context``."""

    def __init__(self, request: Request, http: _HTTPConnection) -> None:
        super().__init__(request)
        self._http = http
        self.websocket: WebSocket | None = None

    def upgrade_to_websocket(self, options: Options | None = None, *, subprotocol: str | None = None) -> WebSocket:
        """Answer 101 and return the connection.

        Raises ``HandshakeError`` (after answering with its HTTP status) when
        the request is not a valid upgrade or the server is at ``max_connections``.
        """
        if self.websocket is not None:
            raise InvalidState("this request was already upgraded")
        self.websocket = self._http.upgrade(options, subprotocol)
        return self.websocket


class _HTTPConnection:
    """One TCP connection until it upgrades: request heads on the I/O thread, handlers on their own."""

    __slots__ = ("server", "transport", "http", "core", "timer", "busy", "upgraded")

    def __init__(self, server: Server, sock: socket.socket, tls: bool) -> None:
        self.server = server
        self.http = HTTPSession(server)
        self.core = self.http.core
        self.transport = Transport(
            sock, server._reactor, self, close_timeout=server.options.close_timeout, tls_handshake=tls
        )
        self.timer: Timer | None = None
        #: A handler thread owns the connection (its request is being answered).
        self.busy = False
        self.upgraded = False

    # -- the I/O thread

    def start(self) -> None:
        self.server._http.add(self)
        self.transport.start()
        self._arm_timer()

    def data_received(self, data: memoryview | bytes) -> Callable[[], None] | None:
        core = self.core
        core.receive_data(bytes(data))
        request = self.http.next_request()
        self.transport.write(core.data_to_send())
        if request is not None:
            # One request at a time: what the client pipelines waits in the kernel, not in memory.
            self.transport.pause_reading()
            self.busy = True
            return lambda: self._dispatch(request)
        if core.state is State.CLOSED:
            return self.transport.close
        return None

    def eof_received(self) -> None:
        pass  # the transport closes; a handler still running finds it closed

    def connection_lost(self) -> None:
        self.server._http.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def write_drained(self) -> None:
        pass

    def _dispatch(self, request: Request) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server._spawn(self, request)

    def _arm_timer(self) -> None:
        timeout = self.server.options.open_timeout
        if timeout is not None:
            self.timer = self.server._reactor.call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        """No complete request in time (slowloris, or an idle keep-alive connection)."""
        self.timer = None
        if not self.busy:
            self.transport.abort_now()

    def _await_next(self) -> None:
        """Back from a handler with keep-alive: read the next request (I/O thread)."""
        self.busy = False
        if self.core.state >= State.OPEN:
            return  # answered with Connection: close
        if self.server.closing:
            self.transport.close()
            return
        self._arm_timer()
        with self.transport.lock:
            self.transport.resume_reading()

    # -- handler threads

    def serve(self, request: Request | None) -> None:
        """Answer ``request``, and those pipelined behind it, on this handler thread."""
        while request is not None and not self.upgraded:
            self._handle(request)
            with self.transport.lock:
                pending = not self.upgraded and self.core.state < State.OPEN
                request = self.http.next_request() if pending else None
        if not self.upgraded:
            self.server._reactor.call_soon(self._await_next)

    def _handle(self, request: Request) -> None:
        handler, refusal, keep_alive = self.http.route(request)
        if handler is None:
            self.respond(refusal, keep_alive)
            return
        context = Context(request, self)
        error: Exception | None = None
        try:
            handler(context)
        except Exception as exc:
            error = exc
        outcome = self.http.outcome(request, context.websocket is not None, context.response, error)
        if isinstance(outcome, Response):
            self.respond(outcome)
        elif outcome is not None and context.websocket is not None:
            context.websocket.close(*outcome)

    def respond(self, response: Response | None, keep_alive: bool | None = None) -> None:
        """Send a plain HTTP answer; the connection closes after it unless keep-alive goes on."""
        with self.transport.lock:
            close = None if response is None or self.upgraded else self.http.respond(response, keep_alive)
            self.transport.write(self.core.data_to_send())
        if close:
            self.transport.close()

    def upgrade(self, options: Options | None, subprotocol: str | None) -> WebSocket:
        server = self.server
        transport = self.transport
        # The server's lock makes the max_connections check and the registration one step.
        with server._lock, transport.lock:
            refusal = self.http.upgrade(options, subprotocol)
            # The answer goes out before anything a broadcast may write once ws is in connections.
            transport.write(self.core.data_to_send())
            if refusal is None:
                ws = WebSocket(self.core, transport, server._forget)
                transport.protocol = ws
                self.upgraded = True
                server.connections.add(ws)
        if refusal is not None:
            transport.close()
            raise refusal
        # Frames that came with the request were parsed by accept().
        ws.opened()
        server._reactor.call_soon(self._start_websocket, ws)
        return ws

    def _start_websocket(self, ws: WebSocket) -> None:
        self.server._http.discard(self)
        ws.start()


class Server(RoutedServer[Handler]):
    """Routes by path; a route's handler answers plain HTTP or upgrades to a WebSocket.

    Handlers are plain functions, each run on its own thread. See
    ``RoutedServer`` for ``max_connections`` and ``allowed_origins``.
    """

    def __init__(self, options: Options | None = None, **settings: Any) -> None:
        """``settings``: ``max_connections``, ``allowed_origins``, ``ssl``, ``shutdown_timeout``.

        See ``RoutedServer`` for each.
        """
        super().__init__(options, **settings)
        #: Open WebSockets; take a copy to iterate (handler threads add to it).
        self.connections: set[WebSocket] = set()
        self._lock = threading.Lock()
        self._connections_gone = threading.Condition(self._lock)
        self._http: set[_HTTPConnection] = set()
        # Handler threads: started, and running (by ident); signalled as each ends.
        self._handlers = 0
        self._handler_idents: set[int] = set()
        self._handlers_done = threading.Condition(threading.Lock())
        self._reactor: Reactor  # the I/O thread, from listen() on
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        """The port actually bound (useful after ``listen(0)``)."""
        if self._listener is None:
            raise InvalidState("the server is not listening")
        return int(self._listener.getsockname()[1])

    def listen(self, port: int = 8080, host: str | None = "127.0.0.1", *, backlog: int = 1024) -> None:
        """Bind and start accepting connections on the server's I/O thread; returns at once."""
        if self._listener is not None:
            raise InvalidState("the server is already listening")
        listener = socket.create_server((host or "", port), backlog=backlog)
        listener.setblocking(False)
        self._listener = listener
        self._reactor = Reactor("wsstack-server-io")
        self._reactor.start()
        self._reactor.call_soon(self._reactor.register, listener, IN, _Acceptor(self))

    def serve_forever(self) -> None:
        """Block until ``shutdown()`` is called from another thread (or a handler)."""
        if self._listener is None:
            raise InvalidState("call listen() first")
        self._stopped.wait()

    def shutdown(self, timeout: float | None = None) -> None:
        """Graceful shutdown: stop accepting, close WebSockets with 1001, wait for handlers.

        Handlers still running after ``timeout`` seconds (``shutdown_timeout``
        by default) have their connections aborted; their threads are daemons
        and are not waited for further.
        """
        with self._lock:
            already, self.closing = self.closing, True
        if already:
            self._stopped.wait()
            return
        timeout = self.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._listener is not None and self._reactor.alive:
            self._reactor.call_soon(self._stop_accepting)
            with self._lock:
                connections = list(self.connections)
            for ws in connections:
                ws.start_close(1001, "server shutting down")
            me = 1 if threading.get_ident() in self._handler_idents else 0  # shutdown() from a handler
            with self._handlers_done:
                self._handlers_done.wait_for(lambda: self._handlers <= me, max(0.0, deadline - time.monotonic()))
            self._reactor.call_soon(self._abort_all)
            # A handler reading its socket directly gives it back to the I/O thread to be
            # closed (transport.py, end_direct): keep the loop running until that is done.
            with self._connections_gone:
                self._connections_gone.wait_for(lambda: not self.connections, _ABORT_WAIT)
            self._reactor.stop(timeout=5)
        self._stopped.set()

    close = shutdown  # the asyncio server's name

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def run(self, port: int = 8080, host: str | None = "127.0.0.1") -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully (call from the main thread)."""
        self.listen(port, host)
        logger.info("listening on %s:%d", host or "*", self.port)
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.shutdown()

    # -- internals

    def _spawn(self, http: _HTTPConnection, request: Request) -> None:
        """Run the request's handler on a new thread (I/O thread).

        A bare ``_thread`` rather than ``threading.Thread``: ``Thread.start()``
        blocks until the new thread runs, a thread switch the I/O thread
        would pay for every connection, and a ``Thread`` object with its
        events costs some 2.5 KiB per connection. The price: in a handler,
        ``threading.current_thread()`` is a nameless "Dummy" thread.
        """
        with self._handlers_done:
            self._handlers += 1
        try:
            _thread.start_new_thread(self._run_handler, (http, request))
        except RuntimeError as exc:  # the system's thread limit
            logger.error("cannot start a handler thread: %s", exc)
            self._handler_finished()
            http.transport.abort_now()

    def _run_handler(self, http: _HTTPConnection, request: Request) -> None:
        ident = threading.get_ident()
        self._handler_idents.add(ident)
        try:
            http.serve(request)
        except BaseException:  # serve() handles Exception; this is SystemExit and the like
            logger.exception("handler thread for %s %s ended abruptly", request.method, request.path)
        finally:
            self._handler_idents.discard(ident)
            self._handler_finished()

    def _handler_finished(self) -> None:
        with self._handlers_done:
            self._handlers -= 1
            if self._handlers <= 1:
                self._handlers_done.notify_all()

    def _forget(self, ws: WebSocket) -> None:
        with self._lock:
            self.connections.discard(ws)
            if not self.connections:
                self._connections_gone.notify_all()

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, for one: keep serving the others
                logger.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl is not None:
                sock = self.ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            _HTTPConnection(self, sock, self.ssl is not None).start()

    def _stop_accepting(self) -> None:
        listener = self._listener
        if listener is not None:
            self._reactor.unregister(listener)
            listener.close()
        for http in list(self._http):
            if not http.busy:
                http.transport.abort_now()

    def _abort_all(self) -> None:
        with self._lock:
            connections = list(self.connections)
        for ws in connections:
            ws.abort()
        for http in list(self._http):
            http.transport.abort_now()


class _Acceptor:
    """The listening socket's entry in the selector."""

    __slots__ = ("server",)

    def __init__(self, server: Server) -> None:
        self.server = server

    def read_ready(self) -> None:
        self.server._accept()

    def write_ready(self) -> None:
        pass

    def abort(self) -> None:
        pass
