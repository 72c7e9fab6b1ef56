"""The blocking WebSocket connection: the seed's connection API over the session layer, for threads.

Two kinds of thread touch a connection. Application threads call ``recv``,
``send``, ``ping`` and ``close``. A thread that waits in ``recv()`` with
nothing queued reads the socket itself (see transport.py), so a message
costs it one wake-up; whenever no application thread is reading, the
reactor's I/O thread reads instead, so pings, close frames and the
heartbeat are handled whether or not the application calls ``recv()``.
Senders write what the kernel takes; if the peer lags by more than
``write_limit``, a sender flushes the rest itself, waiting for the socket
to turn writable (or, over TLS and while another sender does so, waits on a
condition variable signalled as the output drains).

One lock per connection (the transport's) guards the session, the core and
the output, so frames from concurrent senders never interleave and every
frame the core produces is written in the order it was produced. The
session's decisions are carried out under that lock, except what may run
foreign code or touch timers: ping futures are settled after it is released,
and timers belong to the I/O thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, cast

from ..connection import Connection, State
from ..errors import InvalidState
from ..events import Event
from ..frames import Frame
from ..session import Action, CoreView, Message, SharedFrames, WebSocketSession
from .reactor import Timer
from .transport import LOCK_RETRY, Transport

__all__ = ["WebSocket"]

logger = logging.getLogger("wsstack")

_WAKE = Action.WAKE  # the one decision of the usual read, checked on each

#: Seconds a sender flushing its own output waits for the socket at a time:
#: a close from another thread or the heartbeat failing the connection,
#: which nothing on the socket announces, ends its wait at the next look.
_RECHECK = 0.1

#: Seconds a ``recv()`` reads its socket itself with nothing coming before
#: it gives the socket back to the I/O thread and waits to be woken. A
#: message then costs one thread switch more, but a wave of messages to
#: thousands of idle connections (a close to every one, say) is read by the
#: one I/O thread instead of waking thousands of threads that each want the
#: GIL back after every system call. Closing 5,000 connections that had
#: been idle 1.5 s took 11.2 s with every handler thread reading directly,
#: 1.2 to 1.4 s (262 to 296 us of server CPU a close, against 4,166 to
#: 4,842) once they waited instead (benchmarks/many_connections.py).
DIRECT_IDLE = 1.0


class WebSocket(CoreView):
    """One WebSocket connection, server or client side, with blocking calls (see ``CoreView``).

    A ``timeout`` on ``recv()`` raises ``TimeoutError`` when nothing came in
    time. Every method may be called from any thread.
    """

    __slots__ = (
        "_session",
        "_core",
        "_queue",
        "_transport",
        "_lock",
        "_cond",
        "_write_limit",
        "_close_timer",
        "_failure_timer",
        "_heartbeat",
        "_on_close",
        "_close_callbacks",
        "__weakref__",
    )

    def __init__(
        self, core: Connection, transport: Transport, on_close: Callable[[WebSocket], object] | None = None
    ) -> None:
        self._session = session = WebSocketSession(core)
        self._core = core
        self._queue = session.queue
        self._transport = transport
        self._lock = transport.lock
        self._cond = threading.Condition(self._lock)
        self._write_limit = core.options.write_limit
        self._close_timer: Timer | None = None
        self._failure_timer: Timer | None = None
        self._heartbeat: Timer | None = None
        self._on_close = on_close
        self._close_callbacks: list[Callable[[WebSocket], object]] | None = None

    # ------------------------------------------------------------ properties

    @property
    def remote_address(self) -> Any:
        """The peer's address as the socket gives it (``(host, port)`` for IPv4)."""
        return self._transport.peer

    @property
    def core(self) -> Connection:
        """The sans-IO connection underneath, for what this API does not cover (hold no reference across threads)."""
        return self._core

    # ------------------------------------------------------------- receiving

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message: ``str`` for text, ``bytes`` for binary, ``None`` once closed.

        One thread receives at a time: a ``recv()`` while another thread
        waits in one raises ``InvalidState`` (the waiting one is unaffected).
        """
        with self._lock:
            if self._core.frame_mode:
                raise InvalidState("recv_frame() switched this connection to frame mode")
            return self._next(timeout)  # type: ignore[no-any-return]

    def recv_frame(self, timeout: float | None = None) -> Frame | None:
        """The next frame, control frames included; ``None`` once closed (one thread at a time, as ``recv()``).

        A close frame tells its code and reason (``Frame.close_code``,
        ``Frame.close_reason``); the core has answered it already. The first
        call switches the connection to frame mode for good: what arrived
        before it comes as frames too, each whole message read by then as one
        frame and a message read in part as one frame of what was read, so
        nothing is lost, but only frames read after the switch keep their
        own boundaries and the control frames among them.
        """
        with self._lock:
            self._session.enter_frame_mode()
            return self._next(timeout)  # type: ignore[no-any-return]

    def _next(self, timeout: float | None) -> Any:
        queue = self._queue
        session = self._session
        if not queue or session.receiving is not None:
            token = object()
            session.start_receiving(token)  # InvalidState while another thread waits
            try:
                deadline = None if timeout is None else time.monotonic() + timeout
                direct = True
                while not queue:
                    actions = session.waiting()
                    if actions & ~Action.ENDED:
                        self._act_now(actions)
                    if actions & Action.ENDED:
                        return None
                    if direct and self._transport.begin_direct():
                        direct = self._read_directly(deadline)
                    else:
                        self._wait(deadline)
            finally:
                session.stop_receiving(token)
        item = queue.popleft()
        if session.reading_paused and (actions := session.taken()):
            self._act_now(actions)
        return item

    def _read_directly(self, deadline: float | None) -> bool:
        """Read the socket on this thread until a message is queued or the connection closes (lock held).

        False once nothing came for ``DIRECT_IDLE`` seconds: the socket is
        the I/O thread's again, and the caller waits to be woken. Between
        ``begin_direct`` and ``end_direct`` no other thread reads this
        socket, so the lock can be released while waiting for it without
        letting anyone reorder the byte stream.
        """
        transport = self._transport
        session = self._session
        lock = self._lock
        idle_until = time.monotonic() + DIRECT_IDLE
        idle = False
        try:
            while not self._queue and not session.lost and self._core.state is not State.CLOSED:
                now = time.monotonic()
                if deadline is not None and deadline <= now:
                    raise TimeoutError("timed out")
                if idle_until <= now:
                    idle = True
                    return False
                wait = idle_until - now if deadline is None else min(deadline, idle_until) - now
                lock.release()
                try:
                    data = transport.read_direct(wait)
                finally:
                    lock.acquire()
                if data is None:
                    continue
                idle_until = time.monotonic() + DIRECT_IDLE
                if not data:
                    self.eof_received()
                    transport.close()
                    return True
                after = self.data_received(data)
                transport.recycle()
                if after is not None:
                    lock.release()
                    try:
                        after()
                    finally:
                        lock.acquire()
        finally:
            transport.end_direct()
            if idle or self._core.state is not State.OPEN:
                transport.stop_lingering()  # what is left to read (a close, the EOF) is the I/O thread's
            # Whoever waits on the lock's condition (a sender, wait_closed()) looks again.
            self._cond.notify_all()
        return True

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
        """Send a binary message, as ``send()`` does for bytes-like data (``TypeError`` for anything else)."""
        with self._lock:
            if self._transport.buffered > self._write_limit:
                self._wait_for_room(timeout)
            self._core.send_binary(data)
            self._transport.write(self._core.data_to_send())

    def _wait_for_room(self, timeout: float | None) -> None:
        """Wait until the output is under the write limit again, flushing it on this thread if the transport lets it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        transport = self._transport
        while self._over_limit():
            if transport.begin_direct_write():
                try:
                    self._flush_directly(deadline)
                finally:
                    transport.end_direct_write()
                    self._cond.notify_all()  # another sender waiting for room may flush now
            else:
                self._wait(deadline)
        # A flush that failed, or an abort that woke it: send() raises once the loss is known.
        while transport.failing and not self._session.lost and transport.reactor.alive:
            self._wait(deadline)

    def _over_limit(self) -> bool:
        alive = not self._session.lost and self._core.state is State.OPEN
        return alive and self._transport.buffered > self._write_limit

    def _flush_directly(self, deadline: float | None) -> None:
        """Flush on this thread until under the write limit (lock held, released while the socket is full)."""
        transport = self._transport
        lock = self._lock
        while self._over_limit():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("timed out")
            lock.release()
            try:
                writable = transport.wait_writable(_RECHECK if remaining is None else min(remaining, _RECHECK))
            finally:
                lock.acquire()
            if writable:
                transport.flush_direct()

    def write_shared(self, frames: SharedFrames) -> bool:
        """Write a broadcast message now, unless closed or over the write limit (see ``broadcast``)."""
        core = self._core
        transport = self._transport
        with self._lock:
            if core.state is not State.OPEN or transport.buffered > self._write_limit:
                return False
            transport.write(frames.frame_for(core))
        return True

    def ping(self, data: bytes | str = b"") -> Future[float]:
        """Send a ping now; the returned future resolves with the round-trip time in seconds.

        Without data a random 4-byte payload is used so the pong can be
        matched. A pong acknowledges its ping and every ping sent before it.
        The future fails with ``ConnectionClosed`` if the connection ends
        first; a connected but silent peer may never answer, so bound the
        wait (``ws.ping().result(timeout)``). It is settled on the I/O thread, where its callbacks run:
        keep them short and never block in them.
        """
        waiter: Future[float] = Future()
        with self._lock:
            self._session.ping(data, waiter, time.monotonic())
            self._transport.write(self._core.data_to_send())
            self._transport.stop_lingering()  # the pong is read at once, not at the next linger tick
        return waiter

    def pong(self, data: bytes | str = b"") -> None:
        """Send a pong; with ``auto_pong`` on (the default) pings are answered already (see ``Connection.pong``)."""
        with self._lock:
            self._core.pong(data)
            self._transport.write(self._core.data_to_send())

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake, waiting at most ``Options.close_timeout`` for the peer."""
        self.start_close(code, reason)
        if not self._transport.reactor.in_thread:
            self.wait_closed()

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """Send the close frame and arm the close timeout, without waiting (any thread)."""
        with self._lock:
            if self._session.lost:
                return
            self._transport.stop_lingering()  # the I/O thread reads the answer
            after = self._act(self._session.close(code, reason) | Action.LINGER)
        if after is not None:
            after()

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until the TCP connection is gone; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._transport.stop_lingering()
            while not self._session.lost:
                self._wait(deadline)

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake (any thread; at once on the I/O thread)."""
        self._on_io_thread(self._transport.abort_now)

    def add_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        """Have ``callback(ws)`` called once the TCP connection is gone; at once if it is gone already.

        For code that keeps connections in its own tables (the hub's
        topics) and must forget them without a thread per connection
        waiting in ``wait_closed()``. It runs on the I/O thread (or on the
        caller's, when the connection is gone already), so it must not
        block; an exception in it is logged.
        """
        with self._lock:
            if not self._session.lost:
                if self._close_callbacks is None:
                    self._close_callbacks = []
                self._close_callbacks.append(callback)
                return
        _call_close_callback(callback, self)

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------- called by the transport

    def opened(self, taken: Sequence[Event] = ()) -> None:
        """Take what arrived with the opening handshake (frames, even a close), on the opening thread.

        ``taken``: the events that followed the handshake's own, if already
        taken from the core. This runs before ``start()`` so that a
        ``recv()`` right after the handshake finds those messages queued.
        """
        with self._lock:
            after = self._act(self._session.process_events(taken))
        if after is not None:
            after()

    def start(self) -> None:
        """Begin reading and the heartbeat (I/O thread: timers and registrations are its own)."""
        transport = self._transport
        transport.start()
        with self._lock:
            session = self._session
            if session.reading_paused:
                transport.pause_reading()  # opened() queued max_queue messages already
            when = None if session.lost else session.heartbeat_start(time.monotonic())
        if when is not None:
            self._arm_heartbeat(when)

    def data_received(self, data: memoryview | bytes) -> Callable[[], None] | None:
        """Feed the session (lock held, on the reading thread); what to do once the lock is released."""
        session = self._session
        if self._transport.buffered > self._write_limit and not session.writing_paused:
            # The peer does not read: remember only its latest ping instead of piling up pongs.
            session.pause_writing()
        # The core copies what it is given at once (into its frame buffer), so a
        # view of the reactor's shared read buffer does not outlive this call.
        actions = session.receive_data(cast(bytes, data))
        if actions == _WAKE:
            # The usual read, without _act's other checks: messages for recv().
            self._cond.notify_all()
        elif actions:
            return self._act(actions)
        out = self._core.data_to_send()
        if out:
            self._transport.write(out)
        return None

    def eof_received(self) -> None:
        self._act_now(self._session.receive_data(b""))

    def connection_lost(self) -> None:
        with self._lock:
            error, pings = self._session.connection_lost()
            self._cond.notify_all()
        for timer in (self._heartbeat, self._close_timer, self._failure_timer):
            if timer is not None:
                timer.cancel()
        for waiter in pings:
            _settle(waiter, error=error)
        if self._on_close is not None:
            self._on_close(self)
        with self._lock:
            callbacks, self._close_callbacks = self._close_callbacks, None
        for callback in callbacks or ():
            _call_close_callback(callback, self)

    def write_drained(self) -> None:
        """The transport flushed some output (lock held)."""
        if self._transport.buffered <= self._write_limit:
            if self._session.writing_paused:
                self._act_now(self._session.resume_writing())
            self._cond.notify_all()

    # ------------------------------------------------------------- internals

    def _act(self, actions: int) -> Callable[[], None] | None:
        """Carry out the session's decisions (lock held); what is left for after the lock is released."""
        session = self._session
        transport = self._transport
        if actions & Action.PAUSE_READING:
            transport.pause_reading()
        if actions & Action.RESUME_READING and not session.reading_paused:
            transport.resume_reading()
        if actions & (Action.WAKE | Action.CLOSE_TCP | Action.LINGER):
            self._cond.notify_all()
        out = self._core.data_to_send()
        if out:
            transport.write(out)
        acks = session.take_acknowledged(time.monotonic()) if actions & Action.ACKNOWLEDGED else None
        later = actions & (Action.HOLD | Action.CLOSE_TCP | Action.LINGER | Action.HEARTBEAT)
        if acks or later:
            return lambda: self._after(acks, later)
        return None

    def _act_now(self, actions: int) -> None:
        """``_act``, for callers that may run what follows it with the lock held."""
        after = self._act(actions)
        if after is not None:
            self._transport.reactor.call_soon(after)

    def _after(self, acks: list[tuple[Any, float]] | None, actions: int) -> None:
        """The decisions that run foreign code (ping futures) or touch timers (on the I/O thread)."""
        if acks:
            for waiter, rtt in acks:
                _settle(waiter, rtt)
        if actions & Action.CLOSE_TCP and not self._transport.reactor.in_thread and self._transport.close_here():
            actions &= ~Action.CLOSE_TCP  # see Transport.close_here
        if actions:
            self._on_io_thread(lambda: self._on_timers(actions))

    def _on_timers(self, actions: int) -> None:
        reactor = self._transport.reactor
        timeout = self._session.close_timeout
        if actions & Action.HOLD and self._failure_timer is None and not self._session.lost:
            # Sent once the application has read (and perhaps answered) what came before.
            self._failure_timer = reactor.call_later(timeout or 0, self._release_held_failure)
        if actions & Action.HEARTBEAT and self._heartbeat is not None:
            self._heartbeat.cancel()
            self._arm_heartbeat(self._session.heartbeat_due)
        if actions & Action.CLOSE_TCP:
            self._transport.close()
        elif actions & Action.LINGER and self._close_timer is None and timeout is not None and not self._session.lost:
            self._close_timer = reactor.call_later(timeout, self._transport.abort_now)

    def _on_io_thread(self, callback: Callable[[], None]) -> None:
        reactor = self._transport.reactor
        if reactor.in_thread:
            callback()
        else:
            reactor.call_soon(callback)

    def _release_held_failure(self) -> None:
        self._failure_timer = None
        with self._lock:
            after = self._act(self._session.release_held_failure())
        if after is not None:
            after()

    def _arm_heartbeat(self, when: float) -> None:
        self._heartbeat = self._transport.reactor.call_later(max(0.0, when - time.monotonic()), self._heartbeat_fired)

    def _heartbeat_fired(self) -> None:
        """The heartbeat is a reactor timer, so it needs no thread of its own.

        If an application thread holds the lock, the heartbeat looks again a
        moment later instead of holding up the I/O thread (see
        ``Transport.linger_tick``).
        """
        reactor = self._transport.reactor
        if not self._lock.acquire(blocking=False):
            self._heartbeat = reactor.call_later(LOCK_RETRY, self._heartbeat_fired)
            return
        self._heartbeat = None
        try:
            actions, when = self._session.heartbeat(time.monotonic())
            self._transport.stop_lingering()  # a pong, if one comes, is read at once
            after = self._act(actions)
        finally:
            self._lock.release()
        if when is not None:
            self._arm_heartbeat(when)
        if after is not None:
            after()


def _call_close_callback(callback: Callable[[WebSocket], object], ws: WebSocket) -> None:
    try:
        callback(ws)
    except Exception:
        logger.exception("close callback %r failed", callback)


def _settle(waiter: Future[float], result: float = 0.0, error: BaseException | None = None) -> None:
    try:
        if error is None:
            waiter.set_result(result)
        else:
            waiter.set_exception(error)
    except InvalidStateError:
        pass  # cancelled by its owner
