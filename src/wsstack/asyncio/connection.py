"""The asyncio WebSocket connection: the seed's connection API over the sans-IO core.

Bytes arrive through an ``asyncio.Protocol`` (no streams: one less buffer
and one less copy per read), go straight into the core, and the events it
returns are queued for ``recv()``. Everything the core wants written is
written at once; a send only waits when the transport's buffer is over its
high-water mark.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..connection import Connection, State
from ..coreview import CoreView
from ..errors import ConnectionClosed, InvalidState
from ..events import BinaryMessage, CloseReceived, ConnectionLost, Ping, Pong, ProtocolFailure, TextMessage
from ..frames import Frame, Opcode
from .waiter import Waiter

__all__ = ["WebSocket"]

logger = logging.getLogger("wsstack")

Message = str | bytes


class WebSocket(CoreView):
    """One WebSocket connection, server or client side.

    ``recv()`` returns ``str`` for text and ``bytes`` for binary messages and
    ``None`` once the connection is closed; ``recv_frame()`` switches the
    connection to frame mode for good and returns every frame as it comes,
    control frames included.
    """

    __slots__ = (
        "_core",
        "_transport",
        "_loop",
        "_max_queue",
        "_close_timeout",
        "_queue",
        "_recv_waiter",
        "_reading_paused",
        "_writing_paused",
        "_drain_waiters",
        "_pings",
        "_lost",
        "_close_timer",
        "_failure_timer",
        "_heartbeat",
        "_ping_deadline",
        "_on_close",
        "_handler",
        "__weakref__",
    )

    def __init__(self, core: Connection, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._core = core
        self._transport = transport
        self._loop = loop
        options = core.options
        self._max_queue = max(1, options.max_queue)
        self._close_timeout = options.close_timeout
        self._queue: collections.deque[Any] = collections.deque()
        self._recv_waiter: Waiter | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._lost: asyncio.Future[None] = loop.create_future()
        self._close_timer: asyncio.TimerHandle | None = None
        self._failure_timer: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._ping_deadline: asyncio.TimerHandle | None = None
        self._on_close: Callable[[WebSocket], None] | None = None
        self._handler: Callable[[Any], object] | None = None
        transport.set_write_buffer_limits(high=options.write_limit)
        if options.ping_interval:
            self._heartbeat = loop.call_later(options.ping_interval, self._send_heartbeat)

    # ------------------------------------------------------------ properties

    @property
    def remote_address(self) -> Any:
        return self._transport.get_extra_info("peername")

    @property
    def core(self) -> Connection:
        """The sans-IO connection underneath, for what this API does not cover."""
        return self._core

    # ------------------------------------------------------------- receiving

    async def recv(self) -> Message | None:
        """The next message: ``str`` for text, ``bytes`` for binary, ``None`` once closed."""
        if self._core.frame_mode:
            raise InvalidState("recv_frame() switched this connection to frame mode")
        if self._handler is not None:
            raise InvalidState("messages go to the message handler; set_message_handler(None) first")
        # _next() inlined: one coroutine less per message on the hot path.
        queue = self._queue
        while not queue:
            waiter = self._wait_for_data()
            if waiter is None:
                return None
            await waiter
        item = queue.popleft()
        if self._reading_paused:
            self._resume_if_drained()
        return item  # type: ignore[no-any-return]

    async def recv_frame(self) -> Frame | None:
        """The next frame, control frames included; ``None`` once closed."""
        if self._handler is not None:
            raise InvalidState("frames go to the message handler; set_message_handler(None) first")
        if not self._core.frame_mode:
            self._core.frame_mode = True
            # Messages already assembled are handed over as single frames.
            self._queue = collections.deque(
                item
                if isinstance(item, Frame)
                else Frame(
                    Opcode.TEXT if isinstance(item, str) else Opcode.BINARY,
                    item.encode() if isinstance(item, str) else item,
                )
                for item in self._queue
            )
        return await self._next()  # type: ignore[no-any-return]

    async def _next(self) -> Any:
        queue = self._queue
        while not queue:
            waiter = self._wait_for_data()
            if waiter is None:
                return None
            await waiter
        item = queue.popleft()
        if self._reading_paused:
            self._resume_if_drained()
        return item

    def _wait_for_data(self) -> Waiter | None:
        """A waiter woken when something is queued, or None once nothing more can come."""
        if self._core.failure_held:
            self._release_failure()
        if self._lost.done() or self._core.state is State.CLOSED:
            return None
        # A cancelled recv() leaves its waiter behind; it is simply replaced.
        waiter = self._recv_waiter = Waiter(loop=self._loop)
        return waiter

    def _resume_if_drained(self) -> None:
        if len(self._queue) <= self._max_queue // 2:
            self._reading_paused = False
            self._transport.resume_reading()

    def set_message_handler(self, handler: Callable[[Any], object] | None) -> None:
        """Have ``handler(message)`` called for each message as it arrives, instead of ``recv()``.

        This is the fastest way to consume a connection: the handler runs
        inside the transport's read callback, with no task to resume. It
        gets what ``recv()`` would return (``str`` or ``bytes``; ``Frame``
        objects in frame mode), in order, starting with anything already
        queued. It must not block; it replies with ``send_nowait()``, and
        ``ws.set_message_handler(ws.send_nowait)`` is a complete echo.

        While a handler is set, ``recv()`` raises ``InvalidState``, and
        reading pauses whenever the transport's write buffer is over its
        high-water mark, so a peer that sends without reading the replies
        cannot make the server buffer without bound. An exception in the
        handler (or a coroutine returned by it: handlers are not awaited)
        is logged and closes the connection with 1011. ``None`` goes back to
        ``recv()``. Keep the route handler (or the client) waiting in
        ``wait_closed()``: returning from a route handler closes the connection.
        """
        if handler is not None and self._recv_waiter is not None and not self._recv_waiter.done():
            raise InvalidState("a recv() is waiting; a message handler would take its messages")
        self._handler = handler
        if handler is None:
            if self._reading_paused and len(self._queue) < self._max_queue:
                self._reading_paused = False
                self._transport.resume_reading()
            return
        queue = self._queue
        while queue and self._handler is handler:
            self._call_handler(queue.popleft())
        if self._handler is not handler:
            return
        if self._writing_paused and not self._reading_paused:
            # No pause_writing() will come while the buffer stays over its limit.
            self._reading_paused = True
            self._transport.pause_reading()
        elif self._reading_paused and not self._writing_paused:
            self._reading_paused = False
            self._transport.resume_reading()

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
        if self._writing_paused:
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
        core = self._core
        core.send_binary(data)
        self._transport.write(core.data_to_send())
        if self._writing_paused:
            await self._drain()

    def ping(self, data: bytes | str = b"") -> asyncio.Future[float]:
        """Send a ping now; the returned future resolves with the round-trip time in seconds.

        Without data a random 4-byte payload is used so the pong can be matched.
        A pong acknowledges its ping and every ping sent before it (RFC 6455
        lets a peer answer only the latest of several pings).
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if not payload:
            payload = os.urandom(4)
        if payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        self._core.ping(payload)
        self._flush()
        waiter: asyncio.Future[float] = self._loop.create_future()
        # Retrieve a failure even when nobody awaits it (fire-and-forget pings).
        waiter.add_done_callback(_consume_exception)
        self._pings[payload] = (waiter, time.monotonic())
        return waiter

    async def pong(self, data: bytes | str = b"") -> None:
        self._core.pong(data)
        self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake, waiting at most ``close_timeout`` for the peer."""
        core = self._core
        if core.state is State.OPEN:
            core.close(code, reason)
            self._flush()
            self._after_events()
        if self._reading_paused:
            # The peer's close frame may be behind messages nobody will read now.
            self._reading_paused = False
            self._transport.resume_reading()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone (closing it after ``close_timeout``)."""
        if self._lost.done():
            return
        if self._close_timer is None and self._close_timeout is not None:
            self._close_timer = self._loop.call_later(self._close_timeout, self._transport.abort)
        await asyncio.shield(self._lost)

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------ transport events

    def _data_received(self, data: bytes) -> None:
        core = self._core
        core.receive_data(data)
        events = core.events()
        if events:
            # Called by the transport, outside any task: a waiting recv() resumes right here.
            self._dispatch(events, eager=True)
        data = core.data_to_send()
        if data:
            self._transport.write(data)
        if core.state is State.CLOSED:
            self._after_events()

    def _eof_received(self) -> None:
        self._core.receive_data(b"")
        self._dispatch(self._core.events())
        self._after_events()

    def _connection_lost(self, exc: Exception | None) -> None:
        core = self._core
        if core.state is not State.CLOSED:
            core.receive_data(b"")
            self._dispatch(core.events())
        for timer in (self._close_timer, self._failure_timer, self._heartbeat, self._ping_deadline):
            if timer is not None:
                timer.cancel()
        if not self._lost.done():
            self._lost.set_result(None)
        error = ConnectionClosed(core.close_code or 1006, core.close_reason)
        for waiter, _ in self._pings.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._pings.clear()
        self._wake_drain(error)
        self._wake_recv()
        if self._on_close is not None:
            self._on_close(self)

    def _pause_writing(self) -> None:
        self._writing_paused = True
        self._core.pause_pongs()
        if self._handler is not None and not self._reading_paused:
            # A handler replies without awaiting; stop taking requests until the replies drain.
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_writing(self) -> None:
        self._writing_paused = False
        self._core.resume_pongs()
        self._flush()
        self._wake_drain(None)
        if self._handler is not None and self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()

    # ------------------------------------------------------------- internals

    def _dispatch(self, events: list[Any], eager: bool = False) -> None:
        queue = self._queue
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                if self._handler is None:
                    queue.append(event.data)
                else:
                    self._call_handler(event.data)
            elif kind is Frame:
                if self._handler is None:
                    queue.append(event)
                else:
                    self._call_handler(event)
                if event.opcode == Opcode.PONG:
                    self._acknowledge(event.payload)
            elif kind is Pong:
                self._acknowledge(event.data)
            elif kind is ProtocolFailure:
                logger.info("failing connection: %s (%d)", event.error, event.code)
                if self._core.failure_held:
                    if queue:
                        # Released once the application has read what came before the error.
                        self._failure_timer = self._loop.call_later(self._close_timeout or 0, self._release_failure)
                    else:
                        self._core.release_failure()
            elif kind is not Ping and kind is not CloseReceived and kind is not ConnectionLost:
                logger.debug("unhandled event %r", event)
        if queue:
            self._wake_recv(eager)
            # Once closing, keep reading: the peer's close frame is behind these.
            if not self._reading_paused and len(queue) >= self._max_queue and self._core.state is State.OPEN:
                self._reading_paused = True
                self._transport.pause_reading()

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
            core = self._core
            if core.state is State.OPEN:
                core.close(1011, "internal error")
                self._flush()
                if self._close_timer is None and self._close_timeout is not None:
                    self._close_timer = self._loop.call_later(self._close_timeout, self._transport.abort)
            if self._reading_paused:
                # Paused for the handler's replies; the peer's close frame must still be read.
                self._reading_paused = False
                self._transport.resume_reading()

    def _after_events(self) -> None:
        """Once the core is closed: the server drops TCP now, a client gives the server time to."""
        if self._core.state is not State.CLOSED or self._lost.done():
            return
        self._wake_recv()
        if not self._core.is_client or not self._core.close_received:
            self._transport.close()
        elif self._close_timer is None and self._close_timeout is not None:
            self._close_timer = self._loop.call_later(self._close_timeout, self._transport.abort)

    def _release_failure(self) -> None:
        if self._failure_timer is not None:
            self._failure_timer.cancel()
            self._failure_timer = None
        self._core.release_failure()
        self._flush()
        self._after_events()

    def _acknowledge(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        now = time.monotonic()
        while self._pings:
            key, (waiter, sent) = next(iter(self._pings.items()))
            del self._pings[key]
            if not waiter.done():
                waiter.set_result(now - sent)
            if key == payload:
                break

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
        if self._lost.done():
            raise ConnectionClosed(self._core.close_code or 1006, self._core.close_reason)
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drain(self, error: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    # -- heartbeat: timer callbacks, not a task, so an idle connection costs no coroutine

    def _send_heartbeat(self) -> None:
        options = self._core.options
        if self._core.state is not State.OPEN:
            return
        try:
            waiter = self.ping()
        except ConnectionClosed:
            return
        if options.ping_timeout:
            self._ping_deadline = self._loop.call_later(options.ping_timeout, self._heartbeat_timeout, waiter)
        waiter.add_done_callback(self._heartbeat_answered)

    def _heartbeat_answered(self, waiter: asyncio.Future[float]) -> None:
        if self._ping_deadline is not None:
            self._ping_deadline.cancel()
            self._ping_deadline = None
        interval = self._core.options.ping_interval
        if not waiter.cancelled() and waiter.exception() is None and interval and not self._lost.done():
            self._heartbeat = self._loop.call_later(interval, self._send_heartbeat)

    def _heartbeat_timeout(self, waiter: asyncio.Future[float]) -> None:
        if waiter.done():
            return
        logger.info("no pong within ping_timeout: closing with 1011")
        self._core.fail(1011, "keepalive ping timeout")
        self._flush()
        self._transport.close()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._close_timeout is not None:
            self._close_timer = self._loop.call_later(self._close_timeout, self._transport.abort)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
