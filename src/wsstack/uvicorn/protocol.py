"""The uvicorn adapter: one WebSocket connection of an ASGI application, on the session layer.

uvicorn's HTTP protocol reads the upgrade request, writes it out again and
hands the transport over: ``connection_made(transport)``, then
``data_received(request)``, then every later read. From there this class is
the asyncio protocol of the connection and the ASGI ``receive``/``send`` of
the application's task. It keeps the contract of uvicorn's own
implementations (``uvicorn/protocols/websockets/`` in uvicorn 0.54): the
constructor ``(config, server_state, app_state, _loop=None)``; registering
itself in ``server_state.connections`` and its task in ``server_state.tasks``;
``shutdown()`` answering 1012, or 500 before the handshake; and the
attributes uvicorn's tests read, with their meaning: ``close_timeout`` (seconds
to wait for the peer's close reply), ``close_timer`` (set while waiting for
it), ``ping_timer`` (the keepalive timer, ``None`` without keepalive) and
``ping_sent_at`` (the loop time of the last keepalive ping, 0.0 before one).

Where it differs from the asyncio adapter, and why:

- **Reading pauses as soon as a message waits that the application has not
  asked for**, not only once ``ws_max_queue`` messages wait: uvicorn's
  implementations read no further than the application, and its test suite
  checks that they do. Unlike theirs, that pause lasts at most
  ``HOLD_SECONDS``; then reading goes on until ``ws_max_queue`` messages
  wait, so that an application that only sends still sees the client's
  pongs and its close. A read that finds the application waiting in
  ``receive()`` resumes it at once instead, so a fast application never
  pauses.
- **``send()`` waits for the write buffer before writing**, not after: it is
  the application's only point of backpressure, and uvicorn's suite checks
  that nothing is written while the transport has paused writing.
- **An application that ends without ``websocket.close`` drops the
  connection without a close frame** (the client sees 1006), and so does one
  that raises after accepting: this is what uvicorn's implementations do and
  its suite asserts.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from ..connection import ServerConnection, State
from ..errors import InvalidHandshake
from ..events import RequestReceived
from ..handshake import check_request
from ..http11 import Request
from ..options import Options
from ..session import Action, WebSocketSession
from ..waiter import Waiter
from .scope import DenialResponse, decode_headers, websocket_scope

__all__ = ["WebSocketProtocol"]

_OPEN, _CLOSED, _REQUEST_RECEIVED = State.OPEN, State.CLOSED, State.REQUEST_RECEIVED
_WAKE = Action.WAKE
_DISCONNECT = "websocket.disconnect"
_ANOTHER_RECEIVE = "another receive() is already waiting on this connection; receive in one task"
#: Bytes of replies held back inside one read callback before they are written anyway
#: (so that the transport's flow control still sees an application that sends a lot).
_DEFER_LIMIT = 1 << 16
#: How long reading stays paused for an application that has not asked for a waiting message
#: (the session's ``ws_max_queue`` bound holds after that).
HOLD_SECONDS = 0.05
#: Bytes a client may send after its upgrade request before the application
#: accepts; past this, reading waits for the accept.
_EARLY_LIMIT = 1 << 16


@functools.lru_cache(maxsize=16)
def _options(
    max_size: int, deflate: bool, max_queue: int, ping_interval: float | None, ping_timeout: float | None
) -> Options:
    """uvicorn's settings as our ``Options``, one object for every connection of a server.

    An interval of 0 or less is "no keepalive" to uvicorn's own WebSocket
    implementations; ``Options`` says that with ``None`` and refuses 0.
    """
    return Options(
        max_message_size=max_size,
        enable_compression=deflate,
        max_queue=max_queue,
        ping_interval=ping_interval if ping_interval is not None and ping_interval > 0 else None,
        ping_timeout=ping_timeout,
    )


class WebSocketProtocol(asyncio.Protocol):
    """``uvicorn app:app --ws wsstack.uvicorn:WebSocketProtocol`` (see the module docstring)."""

    # Slots: a server holds one of these per connection, idle ones included.
    __slots__ = (
        "config",
        "app",
        "loop",
        "logger",
        "root_path",
        "app_state",
        "connections",
        "tasks",
        "default_headers",
        "transport",
        "server",
        "client",
        "scheme",
        "scope",
        "close_timeout",
        "close_timer",
        "ping_timer",
        "ping_sent_at",
        "core",
        "session",
        "_queue",
        "_recv_waiter",
        "_drain_waiters",
        "_failure_timer",
        "_hold_timer",
        "_connect_pending",
        "_accepted",
        "_early_bytes",
        "_denial",
        "_finished",
        "_app_closed",
        "_disconnect",
        "_lost",
        "_in_read",
        "_deferred",
        "_draining",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path = config.root_path
        self.app_state = app_state
        self.connections = cast("set[Any]", server_state.connections)
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "ws"
        self.scope: dict[str, Any] = {}

        self.close_timeout = 10.0
        self.close_timer: asyncio.TimerHandle | None = None
        self.ping_timer: asyncio.TimerHandle | None = None
        self.ping_sent_at = 0.0

        self.core = ServerConnection(self.options(config))
        # A peer's protocol error is answered after the application has read what came before it.
        self.core.hold_failures = True
        self.session = WebSocketSession(self.core)
        self._queue = self.session.queue
        self._recv_waiter: Waiter | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._failure_timer: asyncio.TimerHandle | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self._connect_pending = True
        self._accepted = False
        self._early_bytes = 0
        self._denial: DenialResponse | None = None
        #: Nothing more may be sent: the application closed, an HTTP answer went out, or the server ended it.
        self._finished = False
        #: ... and it was the application's own doing (a close or its HTTP answer): sending again is its mistake.
        self._app_closed = False
        #: The disconnect event once this side decided it (a close by the application, shutdown).
        self._disconnect: dict[str, Any] | None = None
        self._lost = False
        #: Inside data_received, and the bytes of replies held back there (see data_received).
        self._in_read = False
        self._deferred = 0
        #: Failed: our write side is shut, and reading discards until the peer's EOF.
        self._draining = False

    @classmethod
    def options(cls, config: Config) -> Options:
        """The connection's ``Options``, from uvicorn's ``ws_*`` settings.

        A subclass overrides this for what uvicorn has no setting for
        (compression level, ``max_fragments``, ...), and passes the subclass
        to ``--ws``. Return one shared object: every connection keeps a reference.
        """
        return _options(
            config.ws_max_size,
            config.ws_per_message_deflate,
            config.ws_max_queue,
            config.ws_ping_interval,
            config.ws_ping_timeout,
        )

    # ------------------------------------------------------- the transport's calls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; only their methods matter.
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"
        set_limits = getattr(self.transport, "set_write_buffer_limits", None)
        if set_limits is not None:  # uvicorn's test transports have none
            set_limits(high=self.core.options.write_limit)
        self._trace("WebSocket connection made")

    def data_received(self, data: bytes) -> None:
        if not self._accepted:
            self._receive_handshake(data)
            return
        # What the application sends while it runs inside this callback (woken
        # eagerly) is written once, at the end: one system call for the replies to a whole read.
        self._in_read = True
        try:
            actions = self.session.receive_data(data)
            if actions == _WAKE:
                self._wake_recv(eager=True)
            elif actions:
                self._act(actions, eager=True)
        finally:
            self._in_read = False
            self._flush()

    def eof_received(self) -> bool | None:
        if self._accepted:
            self._act(self.session.receive_data(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._trace("WebSocket connection lost")
        self._lost = True
        self.session.connection_lost()
        self._stop_timers()
        self._wake_drain()
        self._wake_recv()
        if exc is None:
            self._close_transport()

    def pause_writing(self) -> None:
        self._act(self.session.pause_writing())

    def resume_writing(self) -> None:
        self._act(self.session.resume_writing())
        self._wake_drain()

    def shutdown(self) -> None:
        """uvicorn is shutting down: 1012 on an open connection, 500 before the handshake."""
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self._finished or self.core.state is _CLOSED:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
        elif self._accepted:
            self._finished = True
            self._disconnect = {"type": _DISCONNECT, "code": 1012}
            self._act(self.session.close(1012, ""))
            self._wake_recv()
        else:
            self._answer(500, "Internal Server Error")
        self._close_transport()

    # ------------------------------------------------------------ ASGI

    async def receive(self) -> dict[str, Any]:
        """The ASGI ``receive`` callable: connect, then each message, then the disconnect."""
        if self._connect_pending:
            self._connect_pending = False
            return {"type": "websocket.connect"}
        queue = self._queue
        session = self.session
        if not queue or self._app_closed or session.receiving is not None:
            # One receiver at a time (the session's rule): a second waiter would replace the
            # first, which would then wait forever. RuntimeError, as uvicorn's own servers raise.
            # A receive() whose wait was cancelled is leaving: its waiter is still _recv_waiter.
            if self._recv_waiter is not None and self._recv_waiter.cancelled():
                session.receiver_cancelled()
            if session.receiving is not None:
                raise RuntimeError(_ANOTHER_RECEIVE)
            token = object()
            session.start_receiving(token)
            try:
                # After the application's own close its disconnect comes at once; after a server-side
                # one (shutdown), once the messages that arrived before it are read.
                while not queue or self._app_closed:
                    event = self._disconnect_event()
                    if event is not None:
                        return event
                    # A cancelled receive() leaves its waiter behind; it is simply replaced.
                    waiter = self._recv_waiter = Waiter(loop=self.loop)
                    await waiter
            finally:
                session.stop_receiving(token)
        item = queue.popleft()
        if session.reading_paused and (actions := session.taken()):
            self._act(actions)
        if type(item) is str:
            return {"type": "websocket.receive", "text": item}
        return {"type": "websocket.receive", "bytes": item}

    async def send(self, message: dict[str, Any]) -> None:
        """The ASGI ``send`` callable: accept, messages, close or the HTTP denial response."""
        kind = message["type"]
        if not self._accepted or self._finished:
            self._send_before_open(kind, message)
            return
        if kind == "websocket.send":
            if self.session.writing_paused and not self._lost:
                await self._drain()
            core = self.core
            if self._lost or core.state is not _OPEN:
                raise ClientDisconnected()
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    raise TypeError("websocket.send needs 'bytes' or 'text'")
                core.send_text(data)
            else:
                core.send_binary(data)
            if self._in_read:
                # Written when data_received returns, unless that is a lot to hold back.
                self._deferred += len(data)
                if self._deferred < _DEFER_LIMIT:
                    return
                self._deferred = 0
            self.transport.write(core.data_to_send())
        elif kind == "websocket.close":
            self._close(message.get("code") or 1000, message.get("reason") or "")
        else:
            raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'.")

    def _send_before_open(self, kind: str, message: dict[str, Any]) -> None:
        """The handshake's messages: accept, close (403) or an HTTP response of the application's."""
        if self._lost or (self._finished and not self._app_closed):
            raise ClientDisconnected()
        if self._finished:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")
        if self._denial is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'.")
            self._denial.add_body(message.get("body", b""))
            if not message.get("more_body", False):
                self._app_closed = True
                self._send_denial()
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._log_request("403")
            self._app_closed = True
            self._answer(403, b"")
        elif kind == "websocket.http.response.start":
            self._denial = DenialResponse(message.get("status"), decode_headers(message.get("headers", ())))
            self._log_request(str(self._denial.status))
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{kind}'."
            )

    async def run_asgi(self) -> None:
        """The application's task: its end closes the connection (see the module docstring)."""
        failed = False
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            result = None
        except BaseException:
            failed = True
            result = None
            self.logger.exception("Exception in ASGI application\n")
        if self._denial is not None and not self._finished:
            if failed and self._denial.body:
                # Part of a body is not a response: the client must not take it for the whole.
                self._denial = None
                self._answer(500, "Internal Server Error")
            else:
                # A response the application started goes out as it stands.
                self._send_denial()
        elif not self._accepted and self.core.state is _REQUEST_RECEIVED:
            if not failed:
                self.logger.error("ASGI callable returned without completing handshake.")
            self._answer(500, "Internal Server Error")
        elif result is not None:
            self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        self._finished = True  # a send from a task the application left behind: the client is gone to it
        if self.close_timer is None:
            self._close_transport()

    # ------------------------------------------------------------ the handshake

    def _receive_handshake(self, data: bytes) -> None:
        core = self.core
        if core.state is not State.CONNECTING:
            # Frames sent before the answer wait in the core until the application accepts.
            self._early_bytes += len(data)
            if self._early_bytes > _EARLY_LIMIT:
                self.transport.pause_reading()
            core.receive_data(data)
            return
        core.receive_data(data)
        for event in core.events():
            if type(event) is RequestReceived:
                self._start(event.request)
        out = core.data_to_send()
        if out:
            self.transport.write(out)
        if core.state is _CLOSED:
            self._close_transport()  # a request that does not parse: the core answered 400

    def _start(self, request: Request) -> None:
        """Check the upgrade request, then start the application on it."""
        try:
            check_request(request)
            self.scope = websocket_scope(
                request,
                asgi_version=self.config.asgi_version,
                root_path=self.root_path,
                scheme=self.scheme,
                server=self.server,
                client=self.client,
                state=self.app_state.copy(),
            )
        except InvalidHandshake as exc:
            self._answer(exc.status, str(exc), list(exc.headers))
            return
        limit = self.config.limit_concurrency
        # This connection is in ``connections`` already: more than ``limit`` of them is over it.
        if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
            self.logger.warning("Exceeded concurrency limit.")
            self._answer(503, "Service Unavailable")
            return
        if self.config.reset_contextvars:
            # uvicorn's workaround for asyncio leaking context variables between tasks
            # (create_task takes no context= before Python 3.11).
            task = contextvars.Context().run(self.loop.create_task, self.run_asgi())
        else:
            task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _accept(self, message: dict[str, Any]) -> None:
        headers = decode_headers(self.default_headers) + decode_headers(message.get("headers", ()))
        self.core.accept(subprotocol=message.get("subprotocol"), headers=headers)
        self._accepted = True
        self._log_request("[accepted]")
        if self._early_bytes > _EARLY_LIMIT:
            self.transport.resume_reading()
        session = self.session
        when = session.heartbeat_start(self.loop.time())
        if when is not None:
            self.ping_timer = self.loop.call_at(when, self._heartbeat_fired)
        self._act(session.process_events())

    def _answer(self, status: int, body: bytes | str, headers: list[tuple[str, str]] | None = None) -> None:
        """Answer the request with plain HTTP instead of an upgrade, and close."""
        if self.core.state is not _REQUEST_RECEIVED:
            return
        denial = DenialResponse(status, headers or [])
        denial.add_body(body.encode() if isinstance(body, str) else body)
        self._denial = denial
        self._send_denial()

    def _send_denial(self) -> None:
        assert self._denial is not None
        try:
            response = self._denial.response(decode_headers(self.default_headers))
            self.core.respond(response, keep_alive=False)
        except ValueError:
            # The application's headers do not fit its body (a Content-Length that does not match).
            self.logger.exception("Invalid HTTP response from the ASGI application")
            self._denial = None
            self._answer(500, "Internal Server Error")
            return
        self._finished = True
        self._disconnect = {"type": _DISCONNECT, "code": 1006}
        self.transport.write(self.core.data_to_send())
        self._close_transport()
        self._wake_recv()

    # ------------------------------------------------------------ closing

    def _close(self, code: int, reason: str) -> None:
        """The application closes: our close frame, then wait ``close_timeout`` for the peer's."""
        core = self.core
        if core.state is not _OPEN:
            self._finished = True  # the peer closed first: nothing to answer
            return
        actions = self.session.close(code, reason)  # ValueError for a code that may not be sent
        self._finished = self._app_closed = True
        self._disconnect = {"type": _DISCONNECT, "code": code, "reason": reason}
        if not actions & Action.CLOSE_TCP:
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)
        self._act(actions)
        self._wake_recv()

    def _close_timed_out(self) -> None:
        self.close_timer = None
        self._abort_transport()

    def _disconnect_event(self) -> dict[str, Any] | None:
        """The ``websocket.disconnect`` event once nothing more can be received, else ``None``."""
        if self._disconnect is not None:
            return self._disconnect
        if not self._accepted:
            if self._lost or self.core.state is _CLOSED:
                return {"type": _DISCONNECT, "code": 1006}
            return None
        actions = self.session.waiting()
        if actions & ~Action.ENDED:
            self._act(actions)
        if not actions & Action.ENDED:
            return None
        core = self.core
        if core.close_sent or core.close_received:
            return {"type": _DISCONNECT, "code": core.close_code or 1005, "reason": core.close_reason}
        return {"type": _DISCONNECT, "code": 1006}

    # ------------------------------------------------------------ internals

    def _act(self, actions: int, eager: bool = False) -> None:
        """Carry out the session's decisions, then write what the core has for the wire."""
        session = self.session
        transport = self.transport
        if actions & Action.PAUSE_READING:
            transport.pause_reading()
        if actions & Action.ACKNOWLEDGED:
            session.take_acknowledged(self.loop.time())  # only the keepalive pings: ASGI has no ping()
            if actions & Action.HEARTBEAT and self.ping_timer is not None:
                self.ping_timer.cancel()
                self.ping_timer = self.loop.call_at(session.heartbeat_due, self._heartbeat_fired)
        if actions & Action.HOLD and self._failure_timer is None:
            self._failure_timer = self.loop.call_later(self.close_timeout, self._release_held_failure)
        if actions & Action.RESUME_READING and not session.reading_paused:
            transport.resume_reading()
        out = self.core.data_to_send()
        if out:
            transport.write(out)
        if actions & Action.CLOSE_TCP and not self._draining:
            self._stop_timers()
            self._close_tcp()
        if actions & Action.WAKE:
            # Last: the application may run right here, and must find the connection as it now is.
            self._wake_recv(eager)

    def _close_tcp(self) -> None:
        """Close TCP once the core is closed; after a failure, only once the peer stops sending.

        Closing a socket with unread data makes the kernel reset the
        connection, and the reset discards what the peer has not read yet:
        our close frame with the failure's code. So after a failure the
        write side is shut and reading goes on (discarding) until the peer's
        EOF, or ``close_timeout``. TLS cannot shut one side (no
        ``write_eof``): there the close is at once, and a peer still sending
        may miss the code.
        """
        transport = self.transport
        if self.core.close_received or not transport.can_write_eof():
            self._close_transport()
            return
        self._draining = True
        transport.write_eof()
        # Messages still queued stay for the application; the peer's bytes must be read now.
        self._act(self.session.read_on())
        self.close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_transport(self) -> None:
        """Write what the core holds (replies held back inside a read included), then close, once.

        uvicorn's test transports refuse a second close.
        """
        self._flush()
        if not self.transport.is_closing():
            self.transport.close()

    def _abort_transport(self) -> None:
        """A timeout: drop the connection, even with unsent data (a peer that does not read is not waited for).

        uvicorn's test transports have no ``abort()``; they are closed instead.
        """
        abort = getattr(self.transport, "abort", None)
        if abort is None:
            self._close_transport()
        else:
            abort()

    def _flush(self) -> None:
        self._deferred = 0
        out = self.core.data_to_send()
        if out:
            self.transport.write(out)

    def _wake_recv(self, eager: bool = False) -> None:
        """Resume a waiting ``receive()``; with messages left and nobody waiting, stop reading."""
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            waiter.wake(eager)
        if self._queue and self._recv_waiter is None and (actions := self.session.hold_reading()):
            self._act(actions)
            if self._hold_timer is None:
                self._hold_timer = self.loop.call_later(HOLD_SECONDS, self._release_hold)

    def _release_hold(self) -> None:
        """The application is still behind: read on, up to the queue's bound."""
        self._hold_timer = None
        self._act(self.session.taken())

    async def _drain(self) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drain(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _heartbeat_fired(self) -> None:
        now = self.loop.time()
        session = self.session
        pinging = session.heartbeat_sent is not None
        actions, when = session.heartbeat(now)
        if not pinging and session.heartbeat_sent is not None:
            self.ping_sent_at = now
        self.ping_timer = None if when is None else self.loop.call_at(when, self._heartbeat_fired)
        if actions:
            self._trace("WebSocket keepalive ping timeout")
        self._act(actions)

    def _release_held_failure(self) -> None:
        self._failure_timer = None
        self._act(self.session.release_held_failure())

    def _stop_timers(self) -> None:
        for timer in (self.close_timer, self.ping_timer, self._failure_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self.close_timer = self.ping_timer = self._failure_timer = self._hold_timer = None

    def _log_request(self, outcome: str) -> None:
        scope: Any = self.scope
        self.logger.info('%s - "WebSocket %s" %s', get_client_addr(scope), get_path_with_query_string(scope), outcome)

    def _trace(self, what: str) -> None:
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%s%s", prefix, what)
