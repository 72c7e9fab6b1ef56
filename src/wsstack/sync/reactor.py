"""The I/O thread: one poll loop that watches every socket it is given.

A blocking WebSocket API needs someone to read the socket while the
application is busy elsewhere, or the peer's pings would go unanswered and a
close would go unnoticed. Giving each connection its own reader thread costs
a thread stack per connection; here one thread per server (and one for all
clients of a process) watches every socket, feeds the sans-IO core and wakes
whichever handler thread waits for a message. It also runs the timers (open
timeout, heartbeat, close timeout), so none of them needs a thread either.

On Linux the loop is an ``epoll`` object, whose interest list other threads
may change while the loop waits (``set_events``): that is what lets an
application thread take over the reading of its own socket while it blocks
in ``recv()``, without a wake-up of the I/O thread (see transport.py).
Elsewhere ``selectors`` stands in, and interest changes are queued to the
I/O thread instead.

``call_soon`` and ``stop`` may be called from any thread; ``set_events``
from any thread that holds the registered object's lock; the rest only on
the I/O thread.
"""

from __future__ import annotations

import collections
import heapq
import logging
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Reactor", "Timer", "Pollable", "IN", "OUT", "ONESHOT"]

logger = logging.getLogger("wsstack")

#: One read buffer per I/O thread, shared by all its sockets: data is copied
#: out of it (into the core's frame buffer) before the next read.
READ_SIZE = 256 * 1024

IN = 0x001  # the values of select.EPOLLIN, EPOLLOUT, EPOLLONESHOT on Linux
OUT = 0x004
ONESHOT = 1 << 30
_HUP_ERR = 0x010 | 0x008

#: Set to False to use ``selectors`` even where epoll exists (the tests run both).
USE_EPOLL = hasattr(select, "epoll")

#: Seconds between linger ticks: a socket its application thread stopped
#: reading directly goes back to the I/O thread after one to two of them.
LINGER = 0.05


class Pollable(Protocol):
    """What the reactor calls when a registered socket is ready."""

    def read_ready(self) -> None: ...

    def write_ready(self) -> None: ...

    def abort(self) -> None: ...


class Lingering(Protocol):
    """A socket left unwatched after a direct read, waiting for the reactor's tick."""

    def linger_tick(self, ticks: int) -> bool: ...


class Timer:
    """A callback due at a ``time.monotonic()`` instant; ``cancel`` before it runs to drop it."""

    __slots__ = ("when", "callback", "args", "cancelled", "_reactor")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...], reactor: Reactor) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._reactor = reactor

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        """Drop the timer (on the I/O thread); the heap is compacted once cancelled ones dominate it."""
        if not self.cancelled:
            self.cancelled = True
            self._reactor._cancelled += 1


class _SelectorPoller:
    """``selectors`` behind epoll's interface, for systems without epoll; I/O thread only."""

    threadsafe = False

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def register(self, fd: int, events: int) -> None:
        self.modify(fd, events)

    def modify(self, fd: int, events: int) -> None:
        wanted = (selectors.EVENT_READ if events & IN else 0) | (selectors.EVENT_WRITE if events & OUT else 0)
        key = self._selector.get_map().get(fd)
        if key is None:
            if wanted:
                self._selector.register(fd, wanted)
        elif not wanted:
            self._selector.unregister(fd)
        elif wanted != key.events:
            self._selector.modify(fd, wanted)

    def unregister(self, fd: int) -> None:
        if fd in self._selector.get_map():
            self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return [
            (key.fd, (IN if mask & selectors.EVENT_READ else 0) | (OUT if mask & selectors.EVENT_WRITE else 0))
            for key, mask in self._selector.select(timeout)
        ]

    def close(self) -> None:
        self._selector.close()


class _EpollPoller:
    """``select.epoll``, whose interest list any thread may change (the kernel serialises it)."""

    threadsafe = True

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.register = self._epoll.register
        self.modify = self._epoll.modify

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._epoll.poll(-1 if timeout is None else timeout)

    def close(self) -> None:
        self._epoll.close()


class Reactor:
    """A poll loop on a daemon thread, with thread-safe ``call_soon`` and I/O-thread timers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buffer = bytearray(READ_SIZE)
        self.view = memoryview(self.buffer)
        self._poller: _EpollPoller | _SelectorPoller = _EpollPoller() if USE_EPOLL else _SelectorPoller()
        #: Interest changes from other threads take effect without waking the loop.
        self.threadsafe = self._poller.threadsafe
        self._targets: dict[int, Pollable] = {}
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._poller.register(self._wake_reader.fileno(), IN)
        self._calls: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._timers: list[Timer] = []
        self._cancelled = 0
        self._wake_pending = False
        #: Linger ticks so far; sockets remember the count when their reader left.
        self.ticks = 0
        self._lingering: collections.deque[Lingering] = collections.deque()
        self._tick_armed = False
        self._tick_timer: Timer | None = None
        self._stopping = False
        self._ident: int | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ------------------------------------------------------- any thread

    def start(self) -> None:
        self._thread.start()

    @property
    def in_thread(self) -> bool:
        """True on the I/O thread itself."""
        return threading.get_ident() == self._ident

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the I/O thread, after what it is doing now."""
        self._calls.append((callback, args))
        if threading.get_ident() != self._ident and not self._wake_pending:
            # See _drain_wake_pipe for why one byte per batch of calls is enough.
            self._wake_pending = True
            try:
                self._wake_writer.send(b"\0")
            except OSError:
                pass  # the pipe is full (a wake-up is pending anyway) or closed (stopped)

    def set_events(self, fd: int, events: int) -> None:
        """Change what a registered descriptor is watched for (``threadsafe`` pollers only, or the I/O thread)."""
        try:
            self._poller.modify(fd, events)
        except ValueError:
            pass  # the loop has ended and closed its poller: there is nothing left to watch for

    def linger(self, target: Lingering) -> None:
        """Ask ``target.linger_tick`` at every tick until it returns False."""
        self._lingering.append(target)
        if not self._tick_armed:
            self._tick_armed = True
            self.call_soon(self._arm_tick)

    def stop(self, timeout: float | None = None) -> None:
        """End the loop after the calls queued so far, and wait for the thread to end."""
        self.call_soon(self._stop)
        if not self.in_thread and self._thread.is_alive():
            self._thread.join(timeout)

    # ---------------------------------------------------- the I/O thread

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(time.monotonic() + delay, callback, args, self)
        heapq.heappush(self._timers, timer)
        return timer

    def register(self, sock: socket.socket, events: int, target: Pollable) -> None:
        fd = sock.fileno()
        self._targets[fd] = target
        self._poller.register(fd, events)

    def unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._targets.pop(fd, None)
        self._poller.unregister(fd)

    def _stop(self) -> None:
        self._stopping = True

    def _arm_tick(self) -> None:
        if self._tick_timer is None:
            self._tick_timer = self.call_later(LINGER, self._tick)

    def _tick(self) -> None:
        self._tick_timer = None
        self.ticks += 1
        queue = self._lingering
        for _ in range(len(queue)):
            target = queue.popleft()
            if target.linger_tick(self.ticks):
                queue.append(target)
        if not queue:
            # Cleared before the second look: linger() appends before it tests
            # the flag, so a target added meanwhile is seen here or arms anew.
            self._tick_armed = False
            if not queue:
                return
            self._tick_armed = True
        self._arm_tick()

    def _run(self) -> None:
        self._ident = threading.get_ident()
        poll = self._poller.poll
        targets = self._targets
        calls = self._calls
        timers = self._timers
        wake_fd = self._wake_reader.fileno()
        try:
            while not self._stopping:
                if calls:
                    timeout: float | None = 0
                elif timers:
                    timeout = max(0.0, timers[0].when - time.monotonic())
                else:
                    timeout = None
                events = poll(timeout)
                # The timers due now, not after the events: see _run_timers.
                polled = time.monotonic()
                for fd, mask in events:
                    target = targets.get(fd)
                    if target is None:
                        if fd == wake_fd:
                            self._drain_wake_pipe()
                        continue
                    try:
                        if mask & (IN | _HUP_ERR):
                            target.read_ready()
                        if mask & OUT:
                            target.write_ready()
                    except Exception:
                        logger.exception("I/O error in %s; dropping the connection", self.name)
                        target.abort()
                if timers:
                    self._run_timers(polled)
                # Only what was queued before this point: a call that queues another waits for the next turn.
                for _ in range(len(calls)):
                    callback, args = calls.popleft()
                    try:
                        callback(*args)
                    except Exception:
                        logger.exception("error in a callback on %s", self.name)
        finally:
            self._poller.close()
            self._wake_reader.close()
            self._wake_writer.close()

    def _drain_wake_pipe(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        # Cleared only once the pipe is empty: a thread that saw the flag set
        # (and sent nothing) queued its call before this point, so the calls
        # run below include it; one that sees it clear sends a new byte.
        self._wake_pending = False

    def _run_timers(self, polled: float) -> None:
        """Run the timers that were due when the poll returned (``polled``); later ones wait for the next turn.

        A timer judges what came in before its deadline (a request head, a
        pong): whatever the poll reported is handled first, and a timer that
        fell due while the events were handled runs only after the next poll,
        which reports what arrived meanwhile. Under load one pass over the
        ready sockets can outlast a timeout (issue 15); a timer run at the
        end of it would judge bytes that had arrived but not been read.
        """
        timers = self._timers
        while timers and timers[0].when <= polled:
            timer = heapq.heappop(timers)
            if timer.cancelled:
                self._cancelled -= 1
                continue
            try:
                timer.callback(*timer.args)
            except Exception:
                logger.exception("error in a timer on %s", self.name)
        # Cancelled timers far in the future would otherwise pile up (a ping deadline per pong).
        if self._cancelled > 64 and self._cancelled > len(timers) // 2:
            timers[:] = [t for t in timers if not t.cancelled]
            heapq.heapify(timers)
            self._cancelled = 0
