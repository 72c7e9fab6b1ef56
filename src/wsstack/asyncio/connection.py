"""The asyncio WebSocket connection: the seed's connection API over the session layer.

Bytes arrive through an ``asyncio.Protocol`` (no streams: one less buffer
and one less copy per read) and go to the session, whose decisions this
module maps to the loop: a waiting ``recv()`` resumes, reading pauses or
resumes, timers are armed, the transport closes. Everything the core wants
written is written at once; a send only waits when the transport's buffer is
over its high-water mark.

Two things only this transport has, because only an event loop can offer
them: a ``recv()`` that resumes inside ``data_received`` (waiter.py), and
message handlers, which consume messages in the read callback itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ..connection import Connection, State
from ..errors import ConnectionClosed, InvalidState
from ..events import Event
from ..frames import Frame
from ..session import Action, CoreView, Message, SharedFrames, WebSocketSession
from ..waiter import Waiter

__all__ = ["WebSocket"]

logger = logging.getLogger("wsstack")

_WAKE = Action.WAKE  # the one decision of the usual read, checked on each


class WebSocket(CoreView):
    """One WebSocket connection, server or client side, with coroutines (see ``CoreView``).

    Beside ``recv()``, a message handler (``set_message_handler``) can take
    the messages inside the read callback.
    """

    __slots__ = (
        "_session",
        "_core",
        "_queue",
        "_transport",
        "_loop",
        "_recv_waiter",
        "_drain_waiters",
        "_lost_waiters",
        "_close_timer",
        "_failure_timer",
        "_heartbeat",
        "_on_close",
        "_close_callbacks",
        "_handler",
        "__weakref__",
    )

    def __init__(
        self,
        core: Connection,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        on_close: Callable[[WebSocket], object] | None = None,
    ) -> None:
        self._session = session = WebSocketSession(core)
        self._core = core
        self._queue = session.queue
        self._transport = transport
        self._loop = loop
        self._recv_waiter: Waiter | None = None
        # Both made when first needed: most connections never wait for either.
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._lost_waiters: list[asyncio.Future[None]] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._failure_timer: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._on_close = on_close
        self._close_callbacks: list[Callable[[WebSocket], object]] | None = None
        self._handler: Callable[[Any], object] | None = None
        transport.set_write_buffer_limits(high=core.options.write_limit)
        when = session.heartbeat_start(loop.time())
        if when is not None:
            self._heartbeat = loop.call_at(when, self._heartbeat_fired)

    # ------------------------------------------------------------ properties

    @property
    def remote_address(self) -> Any:
        """The peer's address as the socket gives it (``(host, port)`` for IPv4)."""
        return self._transport.get_extra_info("peername")

    @property
    def core(self) -> Connection:
        """The sans-IO connection underneath, for what this API does not cover."""
        return self._core

    # ------------------------------------------------------------- receiving

    async def recv(self) -> Message | None:
        """The next message: ``str`` for text, ``bytes`` for binary, ``None`` once closed.

        One task receives at a time: a ``recv()`` while another task waits
        in one raises ``InvalidState`` (the waiting one is unaffected).
        """
        if self._core.frame_mode:
            raise InvalidState("recv_frame() switched this connection to frame mode")
        if self._handler is not None:
            raise InvalidState("messages go to the message handler; set_message_handler(None) first")
        # _next() inlined: one coroutine less per message on the hot path.
        queue = self._queue
        session = self._session
        if not queue or session.receiving is not None:
            if session.receiving is not None:
                self._forget_cancelled_receiver()
            token = object()
            session.start_receiving(token)  # InvalidState while another task waits
            try:
                while not queue:
                    waiter = self._wait_for_data()
                    if waiter is None:
                        return None
                    await waiter
            finally:
                session.stop_receiving(token)
        item = queue.popleft()
        if session.reading_paused and (actions := session.taken()):
            self._act(actions)
        return item  # type: ignore[no-any-return]

    async def recv_frame(self) -> Frame | None:
        """The next frame, control frames included; ``None`` once closed (one task at a time, as ``recv()``).

        A close frame tells its code and reason (``Frame.close_code``,
        ``Frame.close_reason``); the core has answered it already. The first
        call switches the connection to frame mode for good: what arrived
        before it comes as frames too, each whole message read by then as one
        frame and a message read in part as one frame of what was read, so
        nothing is lost, but only frames read after the switch keep their
        own boundaries and the control frames among them.
        """
        if self._handler is not None:
            raise InvalidState("frames go to the message handler; set_message_handler(None) first")
        if self._session.receiving is not None:
            self._forget_cancelled_receiver()
        self._session.enter_frame_mode()
        return await self._next()  # type: ignore[no-any-return]

    async def _next(self) -> Any:
        queue = self._queue
        session = self._session
        if not queue or session.receiving is not None:
            if session.receiving is not None:
                self._forget_cancelled_receiver()
            token = object()
            session.start_receiving(token)
            try:
                while not queue:
                    waiter = self._wait_for_data()
                    if waiter is None:
                        return None
                    await waiter
            finally:
                session.stop_receiving(token)
        item = queue.popleft()
        if session.reading_paused and (actions := session.taken()):
            self._act(actions)
        return item

    def _forget_cancelled_receiver(self) -> None:
        """A ``recv()`` whose wait was cancelled is no receiver any more, though its task has yet to leave it.

        Its waiter is still ``_recv_waiter`` (a wake-up clears it first), and
        it will not wait again: the cancellation is raised where it waits.
        The sync transport has no such moment: a timeout ends its ``recv()`` at once.
        """
        waiter = self._recv_waiter
        if waiter is not None and waiter.cancelled():
            self._session.receiver_cancelled()

    def _wait_for_data(self) -> Waiter | None:
        """A waiter woken when something is queued, or None once nothing more can come."""
        actions = self._session.waiting()
        if actions & ~Action.ENDED:
            self._act(actions)
        if actions & Action.ENDED:
            return None
        # A cancelled recv() leaves its waiter behind; it is simply replaced.
        waiter = self._recv_waiter = Waiter(loop=self._loop)
        return waiter

    def set_message_handler(self, handler: Callable[[Any], object] | None) -> None:
        """Have ``handler(message)`` called for each message as it arrives, instead of ``recv()``.

        This is the fastest way to consume a connection: the handler runs
        inside the transport's read callback, with no task to resume. It
        gets what ``recv()`` would return (``str`` or ``bytes``; ``Frame``
        objects in frame mode), in order, starting with anything already
        queued. It must not block; it replies with ``send_nowait()``, and
        ``ws.set_message_handler(ws.send_nowait)`` is a complete echo.

        While a handler is set, ``recv()`` raises ``InvalidState``, and on
        a server reading pauses whenever the transport's write buffer is
        over its high-water mark, so a peer that sends without reading the
        replies cannot make the server buffer without bound. A client reads
        on (both ends pausing would deadlock a client that pipelines): it
        paces what it sends with ``send_nowait()`` itself. An exception in the
        handler (or a coroutine returned by it: handlers are not awaited)
        is logged and closes the connection with 1011. ``None`` goes back to
        ``recv()``. Keep the route handler (or the client) waiting in
        ``wait_closed()``: returning from a route handler closes the connection.
        """
        if handler is not None and self._session.receiving is not None:
            self._forget_cancelled_receiver()
            if self._session.receiving is not None:
                raise InvalidState("a recv() is waiting; a message handler would take its messages")
        self._handler = handler
        if handler is not None:
            self._feed_handler()
            if self._handler is not handler:
                return
        self._act(self._session.set_inline_consumer(handler is not None))

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while (message := await self.recv()) is not None:
            yield message

    # --------------------------------------------------------------- sending

    async def send(self, message: Message | bytearray | memoryview) -> None:
        """Send ``str`` as a text message and anything bytes-like as binary."""
        core = self._core
        core.send(message)
        self._transport.write(core.data_to_send())  # never empty after a send
        if self._session.writing_paused:
            await self._drain()

    def send_nowait(self, message: Message | bytearray | memoryview) -> None:
        """Send at once, without waiting while the write buffer is over its limit.

        For code that cannot await, message handlers first: the frame joins
        the transport's buffer however full it is, so the caller is
        responsible for backpressure (a message handler has it: reading
        pauses while the buffer is full). Raises ``ConnectionClosed`` once
        the connection is closing.
        """
        core = self._core
        core.send(message)
        self._transport.write(core.data_to_send())

    async def send_binary(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message, as ``send()`` does for bytes-like data (``TypeError`` for anything else)."""
        core = self._core
        core.send_binary(data)
        self._transport.write(core.data_to_send())
        if self._session.writing_paused:
            await self._drain()

    def write_shared(self, frames: SharedFrames) -> bool:
        """Write a broadcast message now, unless closed or over the write limit (see ``broadcast``)."""
        core = self._core
        if self._session.writing_paused or core.state is not State.OPEN:
            return False
        self._transport.write(frames.frame_for(core))
        return True

    def ping(self, data: bytes | str = b"") -> asyncio.Future[float]:
        """Send a ping now; the returned future resolves with the round-trip time in seconds.

        Without data a random 4-byte payload is used so the pong can be matched.
        A pong acknowledges its ping and every ping sent before it (RFC 6455
        lets a peer answer only the latest of several pings). The future
        fails with ``ConnectionClosed`` if the connection ends first. A peer
        that is connected but silent may never answer, so bound the wait:
        ``await asyncio.wait_for(ws.ping(), timeout)``.
        """
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._session.ping(data, waiter, self._loop.time())
        self._flush()
        # Retrieve a failure even when nobody awaits it (fire-and-forget pings).
        waiter.add_done_callback(_consume_exception)
        return waiter

    async def pong(self, data: bytes | str = b"") -> None:
        """Send a pong; with ``auto_pong`` on (the default) pings are answered already (see ``Connection.pong``)."""
        self._core.pong(data)
        self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake, waiting at most ``close_timeout`` for the peer."""
        self._act(self._session.close(code, reason))
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone; once closing, abort it after ``close_timeout``."""
        if self._session.lost:
            return
        if self._core.state is State.CLOSING:
            # Waiting for the peer's close frame. Once the core is closed,
            # _act has armed the timer if TCP's end still needs one.
            self._arm_close_timer()
        # A future per waiter, so that cancelling one cancels nothing shared
        # (asyncio.shield did that at the cost of a second future and two callbacks).
        waiter: asyncio.Future[None] = self._loop.create_future()
        waiters = self._lost_waiters
        if waiters is None:
            waiters = self._lost_waiters = []
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiters is self._lost_waiters:
                waiters.remove(waiter)  # a wait_for() in a loop must not pile them up
            raise

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""
        self._transport.abort()

    def add_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        """Have ``callback(ws)`` called once the TCP connection is gone; at once if it is gone already.

        For code that keeps connections in its own tables (the hub's
        topics) and must forget them without a task per connection waiting
        in ``wait_closed()``. It runs in the loop's callback, so it must not
        block; an exception in it is logged.
        """
        if self._session.lost:
            _call_close_callback(callback, self)
            return
        if self._close_callbacks is None:
            self._close_callbacks = []
        self._close_callbacks.append(callback)

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------- called by the asyncio protocol

    def opened(self, taken: Sequence[Event] = ()) -> None:
        """Take what arrived with the opening handshake (frames, even a close).

        ``taken``: the events that followed the handshake's own, if already taken from the core.
        """
        self._act(self._session.process_events(taken))

    def data_received(self, data: bytes | memoryview) -> None:
        actions = self._session.receive_data(data)
        if actions == _WAKE:
            # The usual read, without _act's other checks: messages and nothing else.
            if self._handler is None:
                # Called by the transport, outside any task: a waiting recv() resumes right here.
                waiter = self._recv_waiter
                if waiter is not None:
                    self._recv_waiter = None
                    waiter.wake(True)
            else:
                self._feed_handler()
        elif actions:
            self._act(actions, eager=True)
            return
        data = self._core.data_to_send()
        if data:
            self._transport.write(data)

    def eof_received(self) -> None:
        self._act(self._session.receive_data(b""))

    def connection_lost(self) -> None:
        error, pings = self._session.connection_lost()
        for timer in (self._close_timer, self._failure_timer, self._heartbeat):
            if timer is not None:
                timer.cancel()
        waiters, self._lost_waiters = self._lost_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        for waiter in pings:
            if not waiter.done():
                waiter.set_exception(error)
        self._wake_drain(error)
        self._wake_recv()
        if self._on_close is not None:
            self._on_close(self)
        callbacks, self._close_callbacks = self._close_callbacks, None
        for callback in callbacks or ():
            _call_close_callback(callback, self)

    def pause_writing(self) -> None:
        self._act(self._session.pause_writing())

    def resume_writing(self) -> None:
        self._act(self._session.resume_writing())
        self._wake_drain(None)

    # ------------------------------------------------------------- internals

    def _act(self, actions: int, eager: bool = False) -> None:
        """Carry out the session's decisions, then write what the core has for the wire."""
        session = self._session
        if actions & Action.PAUSE_READING:
            self._transport.pause_reading()
        if actions & Action.ACKNOWLEDGED:
            for waiter, rtt in session.take_acknowledged(self._loop.time()):
                if not waiter.done():
                    waiter.set_result(rtt)
            if actions & Action.HEARTBEAT and self._heartbeat is not None:
                self._heartbeat.cancel()
                self._heartbeat = self._loop.call_at(session.heartbeat_due, self._heartbeat_fired)
        if actions & Action.HOLD and self._failure_timer is None:
            # Released once the application has read what came before the error.
            self._failure_timer = self._loop.call_later(session.close_timeout or 0, self._release_held_failure)
        if actions & Action.WAKE:
            if self._handler is not None:
                self._feed_handler()
                actions |= session.drained()
            else:
                self._wake_recv(eager)
        if actions & Action.RESUME_READING and not session.reading_paused:
            self._transport.resume_reading()
        data = self._core.data_to_send()
        if data:
            self._transport.write(data)
        if actions & Action.CLOSE_TCP:
            self._transport.close()
            self._arm_close_timer()
            if self._failure_timer is not None:
                self._failure_timer.cancel()
                self._failure_timer = None
        elif actions & Action.LINGER:
            self._arm_close_timer()

    def _feed_handler(self) -> None:
        queue = self._queue
        handler = self._handler
        while queue and self._handler is handler:
            self._call_handler(queue.popleft())

    def _call_handler(self, item: Any) -> None:
        handler = self._handler
        assert handler is not None
        try:
            result = handler(item)
            if result is not None and inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError(f"message handler {handler!r} returned an awaitable; handlers are called, not awaited")
        except ConnectionClosed as exc:
            # A reply to a message that came with (or after) the close: nothing to send it on.
            logger.debug("message handler could not reply: %s", exc)
        except Exception:
            logger.exception("message handler failed: closing with 1011")
            self._handler = None
            session = self._session
            # Paused for the handler's replies; the peer's close frame must still be read.
            self._act(session.set_inline_consumer(False) | session.close(1011, "internal error"))
            self._arm_close_timer()

    def _release_held_failure(self) -> None:
        self._failure_timer = None
        self._act(self._session.release_held_failure())

    def _arm_close_timer(self) -> None:
        """Abort the transport if it is still there ``close_timeout`` seconds from now.

        Not when it is closed already with nothing left to write and no TLS
        to shut down: connection_lost is then on its way, and the timer
        would be one more entry in the loop's heap, ordered by TimerHandle's
        Python-level comparisons, for every connection that closes.
        """
        timeout = self._session.close_timeout
        if self._close_timer is not None or timeout is None or self._session.lost:
            return
        transport = self._transport
        if (
            transport.is_closing()
            and not transport.get_write_buffer_size()
            and transport.get_extra_info("sslcontext") is None
        ):
            return
        self._close_timer = self._loop.call_later(timeout, transport.abort)

    def _flush(self) -> None:
        data = self._core.data_to_send()
        if data:
            self._transport.write(data)

    def _wake_recv(self, eager: bool = False) -> None:
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            waiter.wake(eager)

    async def _drain(self) -> None:
        if self._session.lost:
            raise self._session.closed_error()
        waiter: asyncio.Future[None] = self._loop.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drain(self, error: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    def _heartbeat_fired(self) -> None:
        """The heartbeat is a loop timer, not a task, so an idle connection costs no coroutine."""
        actions, when = self._session.heartbeat(self._loop.time())
        self._heartbeat = None if when is None else self._loop.call_at(when, self._heartbeat_fired)
        self._act(actions)


def _call_close_callback(callback: Callable[[WebSocket], object], ws: WebSocket) -> None:
    try:
        callback(ws)
    except Exception:
        logger.exception("close callback %r failed", callback)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
