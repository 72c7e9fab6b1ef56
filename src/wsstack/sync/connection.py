"""The blocking WebSocket connection: the seed's connection API over the sans-IO core, for threads.

Two kinds of thread touch a connection. Application threads call ``recv``,
``send``, ``ping`` and ``close``. A thread that waits in ``recv()`` with
nothing queued reads the socket itself (see transport.py), so a message
costs it one wake-up; whenever no application thread is reading, the
reactor's I/O thread reads instead, so pings, close frames and the
heartbeat are handled whether or not the application calls ``recv()``.
Senders never wait on the socket: they write what the kernel takes and, if
the peer lags by more than ``write_limit``, wait on a condition variable
that the I/O thread signals as it flushes.

One lock per connection (the transport's) guards the core, the queue and
the output, so frames from concurrent senders never interleave and every
frame the core produces is written in the order it was produced.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, cast

from ..connection import Connection, State
from ..coreview import CoreView
from ..errors import ConnectionClosed, InvalidState
from ..events import BinaryMessage, Pong, ProtocolFailure, TextMessage
from ..frames import Frame, Opcode
from .reactor import Timer
from .transport import Transport

__all__ = ["WebSocket"]

logger = logging.getLogger("wsstack")

Message = str | bytes


class WebSocket(CoreView):
    """One WebSocket connection, server or client side, with blocking calls.

    ``recv()`` returns ``str`` for text and ``bytes`` for binary messages and
    ``None`` once the connection is closed; with a ``timeout`` it raises
    ``TimeoutError`` when nothing came in time. ``recv_frame()`` switches the
    connection to frame mode for good and returns every frame as it comes,
    control frames included. Every method may be called from any thread.
    """

    __slots__ = (
        "_core",
        "_transport",
        "_lock",
        "_cond",
        "_queue",
        "_max_queue",
        "_write_limit",
        "_reading_paused",
        "_pings",
        "_lost",
        "_heartbeat",
        "_ping_deadline",
        "_close_timer",
        "_failure_timer",
        "_on_close",
        "__weakref__",
    )

    def __init__(
        self, core: Connection, transport: Transport, on_close: Callable[[WebSocket], None] | None = None
    ) -> None:
        self._core = core
        self._transport = transport
        self._lock = transport.lock
        self._cond = threading.Condition(self._lock)
        options = core.options
        self._queue: collections.deque[Any] = collections.deque()
        self._max_queue = max(1, options.max_queue)
        self._write_limit = options.write_limit
        self._reading_paused = False
        self._pings: dict[bytes, tuple[Future[float], float]] = {}
        self._lost = False
        self._heartbeat: Timer | None = None
        self._ping_deadline: Timer | None = None
        self._close_timer: Timer | None = None
        self._failure_timer: Timer | None = None
        self._on_close = on_close

    # ------------------------------------------------------------ properties

    @property
    def remote_address(self) -> Any:
        return self._transport.peer

    @property
    def core(self) -> Connection:
        """The sans-IO connection underneath, for what this API does not cover (hold no reference across threads)."""
        return self._core

    # ------------------------------------------------------------- receiving

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message: ``str`` for text, ``bytes`` for binary, ``None`` once closed."""
        with self._lock:
            if self._core.frame_mode:
                raise InvalidState("recv_frame() switched this connection to frame mode")
            return self._next(timeout)  # type: ignore[no-any-return]

    def recv_frame(self, timeout: float | None = None) -> Frame | None:
        """The next frame, control frames included; ``None`` once closed."""
        with self._lock:
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
            return self._next(timeout)  # type: ignore[no-any-return]

    def _next(self, timeout: float | None) -> Any:
        queue = self._queue
        if not queue:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not queue:
                if self._core.failure_held:
                    # Everything that came before the peer's error has been read.
                    self._release_failure()
                if self._lost or self._core.state is State.CLOSED:
                    return None
                if self._transport.begin_direct():
                    self._read_directly(deadline)
                else:
                    self._wait(deadline)
        item = queue.popleft()
        if self._reading_paused and len(queue) <= self._max_queue // 2:
            self._reading_paused = False
            self._transport.resume_reading()
        return item

    def _read_directly(self, deadline: float | None) -> None:
        """Read the socket on this thread until a message is queued or the connection closes (lock held).

        Between ``begin_direct`` and ``end_direct`` no other thread reads this
        socket, so the lock can be released while waiting for it without
        letting anyone reorder the byte stream.
        """
        transport = self._transport
        lock = self._lock
        try:
            while not self._queue and not self._lost and self._core.state is not State.CLOSED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("timed out")
                lock.release()
                try:
                    data = transport.recv_direct() if transport.wait_readable(remaining) else None
                finally:
                    lock.acquire()
                if data is None:
                    continue
                if not data:
                    self.eof_received()
                    transport.close()
                    return
                after = self.data_received(data)
                if after is not None:
                    lock.release()
                    try:
                        after()
                    finally:
                        lock.acquire()
        finally:
            transport.end_direct()
            if self._core.state is not State.OPEN:
                transport.stop_lingering()  # what is left to read (a close, the EOF) is the I/O thread's
            # Another thread waiting in recv() may take over the reading.
            self._cond.notify_all()

    def _wait(self, deadline: float | None) -> None:
        """Wait for a notification (lock held); ``TimeoutError`` once ``deadline`` has passed."""
        if deadline is None:
            self._cond.wait()
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self._cond.wait(remaining)

    def __iter__(self) -> Iterator[Message]:
        while (message := self.recv()) is not None:
            yield message

    # --------------------------------------------------------------- sending

    def send(self, message: Message | bytearray | memoryview, timeout: float | None = None) -> None:
        """Send ``str`` as a text message and anything bytes-like as binary.

        Returns once the frame is handed to the kernel or queued behind less
        than ``Options.write_limit`` bytes. While more is queued (the peer
        reads slowly) it blocks first; after ``timeout`` seconds it raises
        ``TimeoutError`` without having sent anything.
        """
        with self._lock:
            if self._transport.buffered > self._write_limit:
                self._wait_for_room(timeout)
            self._core.send(message)
            self._transport.write(self._core.data_to_send())

    def send_binary(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        with self._lock:
            if self._transport.buffered > self._write_limit:
                self._wait_for_room(timeout)
            self._core.send_binary(data)
            self._transport.write(self._core.data_to_send())

    def _wait_for_room(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._transport.buffered > self._write_limit and not self._lost and self._core.state is State.OPEN:
            self._wait(deadline)

    def ping(self, data: bytes | str = b"") -> Future[float]:
        """Send a ping now; the returned future resolves with the round-trip time in seconds.

        Without data a random 4-byte payload is used so the pong can be
        matched. A pong acknowledges its ping and every ping sent before it.
        The future is settled on the I/O thread, where its callbacks run:
        keep them short and never block in them.
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if not payload:
            payload = os.urandom(4)
        waiter: Future[float] = Future()
        with self._lock:
            if payload in self._pings:
                raise ValueError("a ping with this payload is already waiting for its pong")
            self._core.ping(payload)
            self._pings[payload] = (waiter, time.monotonic())
            self._transport.write(self._core.data_to_send())
            self._transport.stop_lingering()  # the pong is read at once, not at the next linger tick
        return waiter

    def pong(self, data: bytes | str = b"") -> None:
        with self._lock:
            self._core.pong(data)
            self._transport.write(self._core.data_to_send())

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake, waiting at most ``Options.close_timeout`` for the peer."""
        self._start_close(code, reason)
        if not self._transport.reactor.in_thread:
            self.wait_closed()

    def _start_close(self, code: int, reason: str) -> None:
        """Send the close frame and arm the close timeout, without waiting (any thread)."""
        with self._lock:
            if self._lost:
                return
            self._transport.stop_lingering()  # the I/O thread reads the answer
            if self._core.state is State.OPEN:
                self._core.close(code, reason)  # or sends a held failure's close frame
                self._transport.write(self._core.data_to_send())
            closed = self._core.state is State.CLOSED
            if self._reading_paused:
                # The peer's close frame is behind whatever the queue had no room for.
                self._reading_paused = False
                self._transport.resume_reading()
        self._transport.reactor.call_soon(self._closed_by_core if closed else self._arm_close_timer)

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until the TCP connection is gone; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._transport.stop_lingering()
            while not self._lost:
                self._wait(deadline)

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------ the I/O thread's side

    def start(self) -> None:
        """Begin reading and the heartbeat (I/O thread)."""
        self._transport.start()
        interval = self._core.options.ping_interval
        if interval and not self._lost:
            self._heartbeat = self._transport.reactor.call_later(interval, self._send_heartbeat)
        if self._core.state is State.CLOSED:
            self._closed_by_core()

    def data_received(self, data: memoryview | bytes) -> Callable[[], None] | None:
        """Feed the core (lock held, on the reading thread); what to do once the lock is released."""
        core = self._core
        if self._transport.buffered > self._write_limit:
            # The peer does not read: remember only its latest ping instead of piling up pongs.
            core.pause_pongs()
        # The core copies what it is given at once (into its frame buffer), so a
        # view of the reactor's shared read buffer does not outlive this call.
        core.receive_data(cast(bytes, data))
        events = core.events()
        acks = self._dispatch(events) if events else None
        out = core.data_to_send()
        if out:
            self._transport.write(out)
        if core.state is State.CLOSED:
            self._cond.notify_all()
            return lambda: self._after_read(acks, True)
        if acks:
            return lambda: self._after_read(acks, False)
        return None

    def _after_read(self, acks: list[tuple[Future[float], float]] | None, closed: bool) -> None:
        if acks:
            for waiter, rtt in acks:
                _settle(waiter, rtt)
        if closed:
            self._on_io_thread(self._closed_by_core)

    def eof_received(self) -> None:
        self._core.receive_data(b"")
        self._core.events()
        self._cond.notify_all()

    def connection_lost(self) -> None:
        with self._lock:
            core = self._core
            if core.state is not State.CLOSED:
                core.receive_data(b"")
                core.events()
            self._lost = True
            pings, self._pings = self._pings, {}
            self._cond.notify_all()
        for timer in (self._heartbeat, self._ping_deadline, self._close_timer, self._failure_timer):
            if timer is not None:
                timer.cancel()
        error = ConnectionClosed(core.close_code or 1006, core.close_reason)
        for waiter, _ in pings.values():
            _settle(waiter, error=error)
        if self._on_close is not None:
            self._on_close(self)

    def _on_io_thread(self, callback: Callable[[], None]) -> None:
        reactor = self._transport.reactor
        if reactor.in_thread:
            callback()
        else:
            reactor.call_soon(callback)

    def write_drained(self) -> None:
        transport = self._transport
        if transport.buffered <= self._write_limit:
            self._core.resume_pongs()
            transport.write(self._core.data_to_send())
            self._cond.notify_all()

    def _dispatch(self, events: list[Any]) -> list[tuple[Future[float], float]] | None:
        """Queue messages and match pongs (lock held); the futures to settle once it is released."""
        queue = self._queue
        acks = None
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                queue.append(event.data)
            elif kind is Frame:
                queue.append(event)
                if event.opcode == Opcode.PONG:
                    acks = self._acknowledge(event.payload, acks)
            elif kind is Pong:
                acks = self._acknowledge(event.data, acks)
            elif kind is ProtocolFailure:
                logger.info("failing connection: %s (%d)", event.error, event.code)
                if self._core.failure_held:
                    if queue:
                        # Sent once the application has read (and perhaps answered) what came before.
                        self._on_io_thread(self._arm_failure_timer)
                    else:
                        self._core.release_failure()
        if queue:
            self._cond.notify_all()
            if len(queue) >= self._max_queue:
                state = self._core.state
                if state is State.OPEN:
                    if not self._reading_paused:
                        self._reading_paused = True
                        self._transport.pause_reading()
                elif state is State.CLOSING:
                    # We sent a close and read on for the answer; the application is not reading any more.
                    while len(queue) > self._max_queue:
                        queue.pop()
        return acks

    def _acknowledge(
        self, payload: bytes, acks: list[tuple[Future[float], float]] | None
    ) -> list[tuple[Future[float], float]] | None:
        if payload not in self._pings:
            return acks
        now = time.monotonic()
        acks = acks or []
        pings = self._pings
        while pings:
            key = next(iter(pings))
            waiter, sent = pings.pop(key)
            acks.append((waiter, now - sent))
            if key == payload:
                break
        return acks

    def _release_failure(self) -> None:
        """Send the close frame of the peer's protocol error (lock held)."""
        self._core.release_failure()
        self._transport.write(self._core.data_to_send())
        self._cond.notify_all()
        self._on_io_thread(self._closed_by_core)

    def _arm_failure_timer(self) -> None:
        if self._failure_timer is None and not self._lost:
            self._failure_timer = self._transport.reactor.call_later(
                self._core.options.close_timeout or 0, self._failure_timed_out
            )

    def _failure_timed_out(self) -> None:
        self._failure_timer = None
        with self._lock:
            if self._core.failure_held:
                self._release_failure()

    def _closed_by_core(self) -> None:
        """The core is closed: a server drops TCP now, a client gives the server time to go first."""
        core = self._core
        if not core.is_client or not core.close_received:
            self._transport.close()
        else:
            self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        timeout = self._core.options.close_timeout
        if self._close_timer is None and timeout is not None and not self._lost:
            self._close_timer = self._transport.reactor.call_later(timeout, self._transport.abort_now)

    # -- heartbeat: reactor timers, so it needs no thread of its own

    def _send_heartbeat(self) -> None:
        self._heartbeat = None
        try:
            waiter = self.ping()
        except ConnectionClosed:
            return
        timeout = self._core.options.ping_timeout
        if timeout:
            self._ping_deadline = self._transport.reactor.call_later(timeout, self._heartbeat_timeout, waiter)
        waiter.add_done_callback(self._heartbeat_answered)

    def _heartbeat_answered(self, waiter: Future[float]) -> None:
        # A direct reader may settle the future: the timers belong to the I/O thread.
        self._on_io_thread(lambda: self._heartbeat_settled(waiter))

    def _heartbeat_settled(self, waiter: Future[float]) -> None:
        if self._ping_deadline is not None:
            self._ping_deadline.cancel()
            self._ping_deadline = None
        interval = self._core.options.ping_interval
        if not waiter.cancelled() and waiter.exception() is None and interval and not self._lost:
            self._heartbeat = self._transport.reactor.call_later(interval, self._send_heartbeat)

    def _heartbeat_timeout(self, waiter: Future[float]) -> None:
        self._ping_deadline = None
        if waiter.done():
            return
        logger.info("no pong within ping_timeout: closing with 1011")
        with self._lock:
            self._core.fail(1011, "keepalive ping timeout")
            self._transport.write(self._core.data_to_send())
            self._cond.notify_all()
        self._transport.close()


def _settle(waiter: Future[float], result: float = 0.0, error: BaseException | None = None) -> None:
    try:
        if error is None:
            waiter.set_result(result)
        else:
            waiter.set_exception(error)
    except InvalidStateError:
        pass  # cancelled by its owner
