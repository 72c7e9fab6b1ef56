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
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from ..accepting import accept_batch
from ..connection import State
from ..errors import InvalidState
from ..http11 import Request, Response
from ..options import Options
from ..routing import RequestContext, RoutedServer, check_port
from ..session import ACCEPT_RETRY, AcceptFailures, HTTPSession
from ..workers import supervise
from .connection import WebSocket
from .reactor import IN, Reactor, Timer
from .transport import Transport

__all__ = ["Server", "Context"]

logger = logging.getLogger("wsstack")

Handler = Callable[["Context"], None]

#: Seconds shutdown() waits, after aborting them, for the last WebSockets to be gone.
_ABORT_WAIT = 1.0


def _wrap_server_side(context: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket | None:
    """The accepted socket under TLS, or None (and the socket closed) if the peer reset it already.

    The ssl module refuses a socket no longer connected (an OSError, or an
    SSLError when bytes of a ClientHello came before the reset), after it
    moved the descriptor into an SSLSocket it does not close: left to the
    collector, that one would close late, with a ResourceWarning. It is
    found in the failed call's frame and closed here.
    """
    try:
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except OSError as exc:
        logger.debug("TLS handshake failed: %s", exc)
        traceback = exc.__traceback__
        while traceback is not None:
            orphan = traceback.tb_frame.f_locals.get("self")
            if isinstance(orphan, ssl.SSLSocket):
                orphan.close()
            traceback = traceback.tb_next
        sock.close()  # detached already if the SSLSocket was made; closes it otherwise
        return None


class Context(RequestContext):
    """The request context of the sync server: the seed's ``http::request_context``."""

    def __init__(self, request: Request, http: _HTTPConnection) -> None:
        super().__init__(request)
        self._http = http
        self.websocket: WebSocket | None = None

    def upgrade_to_websocket(
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
        self.websocket = self._http.upgrade(options, subprotocol, overrides)
        return self.websocket


#: Reads an open timer makes before its verdict: enough TLS records (16 KiB at most each) for
#: the largest request head HTTPLimits allows by default (64 KiB).
_LAST_READS = 8


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
        """No complete request in time (slowloris, or an idle keep-alive connection)?

        The socket is read once more before the verdict. The reactor runs a
        timer after the events of the poll that found it due, but one poll
        reports at most 1,023 ready sockets (CPython's epoll): with more
        ready at once, this one's request may be in the kernel, unread.
        What arrived before the timer ran is judged on time; a head still
        incomplete after that read is not.
        """
        self.timer = None
        transport = self.transport
        try:
            # Over TLS one read decrypts one record, and a head may span a few of them.
            for _ in range(_LAST_READS):
                transport.read_ready()
                if self.busy or not transport.tls_pending():
                    break
        finally:
            if not self.busy:
                transport.abort_now()

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

    def upgrade(self, options: Options | None, subprotocol: str | None, overrides: dict[str, Any]) -> WebSocket:
        server = self.server
        transport = self.transport
        with transport.lock:
            # The server's lock makes the max_connections check and the registration one step;
            # it is held for no system call, or a storm of upgrades queues on it for the GIL (issue 15).
            with server._lock:
                refusal = self.http.upgrade(options, subprotocol, overrides)
                if refusal is None:
                    ws = WebSocket(self.core, transport, server._forget)
                    transport.protocol = ws
                    self.upgraded = True
                    server.connections.add(ws)
            # Before anything a broadcast may write, now that ws is in connections: it waits for this lock.
            transport.write(self.core.data_to_send())
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
        self._accept_failures = AcceptFailures()
        #: While accept() fails for want of descriptors: the timer that watches the listener again.
        self._accept_retry: Timer | None = None
        self._stopped = threading.Event()
        #: The port the workers share, in the supervisor of ``run(workers=N)``, which does not listen itself.
        self._workers_port: int | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful after ``listen(0)``); the workers' port in ``run(workers=N)``."""
        if self._listener is None:
            if self._workers_port is not None:
                return self._workers_port
            raise InvalidState("the server is not listening")
        return int(self._listener.getsockname()[1])

    def listen(
        self, port: int = 8080, host: str | None = "127.0.0.1", *, backlog: int = 1024, reuse_port: bool = False
    ) -> None:
        """Bind and start accepting connections on the server's I/O thread; returns at once.

        ``ValueError`` for a port outside 0-65535 (as in ``wsstack.asyncio``;
        the socket module would raise ``OverflowError``). ``reuse_port`` sets
        ``SO_REUSEPORT``, as in ``wsstack.asyncio``.
        """
        check_port(port)
        if self._listener is not None:
            raise InvalidState("the server is already listening")
        listener = socket.create_server((host or "", port), backlog=backlog, reuse_port=reuse_port)
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

    def run(
        self,
        port: int = 8080,
        host: str | None = "127.0.0.1",
        *,
        workers: int | None = None,
        on_listening: Callable[[], object] | None = None,
    ) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully (call from the main thread).

        ``on_listening`` is called once the socket is bound, as in ``wsstack.asyncio``.
        ``workers=N`` serves from N processes on one port, as in
        ``wsstack.asyncio`` (each worker with its own I/O and handler threads):
        threads share one core for Python code, processes do not.
        """
        check_port(port)
        if workers is None:
            self._run_one(port, host, on_listening)
            return

        def serve(shared: int, ready: Callable[[], None]) -> None:
            self._run_one(shared, host, ready, reuse_port=True)

        def listening(shared: int) -> None:
            self._workers_port = shared
            if on_listening is not None:
                on_listening()

        supervise(serve, port, host, workers, shutdown_timeout=self.shutdown_timeout, on_listening=listening)

    def _run_one(
        self, port: int, host: str | None, on_listening: Callable[[], object] | None, reuse_port: bool = False
    ) -> None:
        """``run()`` in one process: the whole server, or one worker (``reuse_port``; the supervisor logs for all)."""
        self.listen(port, host, reuse_port=reuse_port)
        if not reuse_port:
            logger.info("listening on %s:%d", host or "*", self.port)
        if on_listening is not None:
            on_listening()
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
        """Drop a closed connection (I/O thread), taking the server's lock only for the last one.

        Upgrading handler threads hold that lock, and under a storm of
        upgrades the I/O thread waited behind them here for over 20 s in
        a 1,000-client soak (issue 15). A set's ``discard`` needs no lock under
        the GIL; taking one away cannot push the count over
        ``max_connections``, which is all the lock guards with it; and
        ``shutdown()``, which waits for the set to empty, is woken once it is.
        """
        connections = self.connections
        connections.discard(ws)
        if not connections:
            with self._lock:
                self._connections_gone.notify_all()

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        accepted, pause = accept_batch(listener, self._accept_failures, time.monotonic)
        for sock in accepted:
            if self.ssl is not None:
                wrapped = _wrap_server_side(self.ssl, sock)
                if wrapped is None:
                    continue
                sock = wrapped
            _HTTPConnection(self, sock, self.ssl is not None).start()
        if pause:
            self._reactor.unregister(listener)
            self._accept_retry = self._reactor.call_later(ACCEPT_RETRY, self._resume_accepting)

    def _resume_accepting(self) -> None:
        """Watch the listener again, and try at once: with nobody waiting it would not turn readable."""
        self._accept_retry = None
        listener = self._listener
        assert listener is not None
        self._reactor.register(listener, IN, _Acceptor(self))
        self._accept()

    def _stop_accepting(self) -> None:
        listener = self._listener
        if listener is not None:
            if self._accept_retry is not None:  # not watched: accepting was paused
                self._accept_retry.cancel()
                self._accept_retry = None
            else:
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
