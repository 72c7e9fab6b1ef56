"""One TCP (or TLS) connection on a reactor: reads by one thread at a time, writes from any thread.

The socket is non-blocking and ``lock`` guards everything about it. Reading
belongs to the I/O thread, except while an application thread blocks in
``recv()`` with nothing queued: then that thread reads the socket itself
(``begin_direct`` .. ``end_direct``) and the I/O thread stops watching it.
A message then costs one thread wake-up instead of two (the I/O thread's,
then the application's), which roughly doubles the round trips a thread
can do. Between two ``recv()`` calls the socket stays unwatched for a
moment (``end_direct``); pings, close frames and the heartbeat still work
when no thread is in ``recv()``, because the I/O thread takes the reading
back within a linger tick (50 to 100 ms) and keeps it until the next
direct read.

Any thread may write with ``lock`` held: bytes go to the kernel at once when
it has room, and what it refuses waits in ``_out`` in order, for the I/O
thread to flush when the socket turns writable, or for a sender that waits
for room to flush itself (``begin_direct_write`` .. ``end_direct_write``).
The I/O thread closes the socket, never while a direct reader or writer
waits on it (it shuts the socket down instead, which wakes them), so a
descriptor is never closed under a thread still using it; an application
thread closes it only when no other thread reads or writes it
(``close_here``).

While the I/O thread is not reading a socket, its registration is
one-shot: a hang-up reported then wakes the loop once, not in a loop.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Protocol

from .reactor import IN, ONESHOT, OUT, READ_SIZE, Reactor, Timer

__all__ = ["Transport", "TransportProtocol", "LOCK_RETRY", "DIRECT_READ_SIZE"]

logger = logging.getLogger("wsstack")

_RETRY = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_EOF = (ssl.SSLEOFError, ssl.SSLZeroReturnError)
#: A one-shot registration that has fired: the kernel watches nothing until it is re-armed.
_DISARMED = -1
#: The most one direct read takes, into a buffer from ``_spare_buffers``.
DIRECT_READ_SIZE = 256 * 1024
#: Buffers for direct reads, shared by every thread of the process: a thread
#: holds one from its read until the core has copied what it keeps (see
#: ``recycle``), so a few serve any number of connections, and a process
#: keeps 2 MiB of them at most. Reading into them instead of a new 64 KiB
#: ``bytes`` per read, the threaded client spent 36.9 us of CPU per pipelined
#: 64 KiB message, against 47.5 (medians of four alternated runs).
_spare_buffers: list[memoryview] = []
_MAX_SPARE_BUFFERS = 8

#: Seconds before the I/O thread tries again a lock it found taken, when it must not wait for it.
LOCK_RETRY = 0.005
#: Direct reads wait with poll(2); without it (Windows) the I/O thread does all the reading.
_CAN_POLL = hasattr(select, "poll")


def _give_back(buffer: memoryview) -> None:
    if len(_spare_buffers) < _MAX_SPARE_BUFFERS:
        _spare_buffers.append(buffer)


class TransportProtocol(Protocol):
    """What a transport reports to the object that gives the connection its meaning.

    ``data_received`` and ``eof_received`` run with ``lock`` held, on the
    thread that read (the I/O thread or a direct reader); ``data_received``
    may return work to run once the lock is released.
    """

    def data_received(self, data: memoryview | bytes) -> Callable[[], None] | None: ...

    def eof_received(self) -> None: ...

    def connection_lost(self) -> None:
        """The socket is closed (I/O thread, lock not held)."""

    def write_drained(self) -> None:
        """Queued output shrank (I/O thread, lock held): a blocked sender may go on."""


class Transport:
    """A non-blocking socket registered with a ``Reactor``, with ordered thread-safe writes."""

    __slots__ = (
        "sock",
        "fd",
        "reactor",
        "lock",
        "protocol",
        "peer",
        "closed",
        "direct",
        "writer",
        "_tls",
        "_handshaking",
        "_out",
        "_out_size",
        "_reading",
        "_interest",
        "_closing",
        "_broken",
        "_abort_pending",
        "_close_timer",
        "_close_timeout",
        "_lingering",
        "_linger_mark",
        "_linger_queued",
        "_read_full",
        "_read_into",
    )

    def __init__(
        self,
        sock: socket.socket,
        reactor: Reactor,
        protocol: TransportProtocol,
        *,
        close_timeout: float | None,
        tls_handshake: bool = False,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.reactor = reactor
        #: Guards this connection's socket, core, output and queues; shared by its protocol.
        self.lock = threading.Lock()
        self.protocol = protocol
        try:
            self.peer: object = sock.getpeername()
        except OSError:
            self.peer = None
        self.closed = False
        #: The application thread reading the socket (its ident), or 0 (see ``begin_direct``).
        self.direct = 0
        #: An application thread is flushing the output (see ``begin_direct_write``).
        self.writer = False
        self._tls = isinstance(sock, ssl.SSLSocket)
        # 0: no handshake pending; otherwise the event the server's TLS handshake waits for.
        self._handshaking = IN if tls_handshake else 0
        self._out: list[bytes | memoryview] = []
        self._out_size = 0
        self._read_full = False  # the last direct read filled its buffer (see read_direct)
        self._read_into: memoryview | None = None  # that read's buffer, until recycled
        self._reading = True
        # What the poller watches: None before registration, or a mask, or _DISARMED.
        self._interest: int | None = None
        self._closing = False
        self._broken = False
        self._abort_pending = False
        self._close_timer: Timer | None = None
        self._close_timeout = close_timeout
        # After a direct read the I/O thread stays away for a while (see end_direct).
        self._lingering = False
        self._linger_mark = 0
        self._linger_queued = False

    @property
    def failing(self) -> bool:
        """A write failed or an abort waits for a direct reader or writer: the connection is as good as lost."""
        return self._broken or self._abort_pending

    @property
    def buffered(self) -> int:
        """Bytes accepted by ``write`` that the kernel has not taken yet (read with the lock held)."""
        return self._out_size

    # ----------------------------------------------- any thread, lock held

    def write(self, data: bytes) -> None:
        """Send ``data`` after everything written before it."""
        if not data or self.closed or self._broken:
            return
        if self._out or self._handshaking:
            self._out.append(data)
            self._out_size += len(data)
            return
        try:
            sent = self.sock.send(data)
        except _RETRY:
            sent = 0
        except OSError as exc:
            self._fail_write(exc)
            return
        if sent < len(data):
            self._out.append(memoryview(data)[sent:] if sent else data)
            self._out_size += len(data) - sent
            self._apply()

    def pause_reading(self) -> None:
        self._reading = False
        self._apply()

    def resume_reading(self) -> None:
        self._reading = True
        self._apply()
        if self._tls and not self._handshaking:
            # Decrypted bytes held by OpenSSL do not make the socket readable.
            self.reactor.call_soon(self.read_ready)

    def begin_direct(self) -> bool:
        """Make the calling thread this socket's reader, if it can be; the I/O thread stops reading it.

        Not for TLS (OpenSSL must be read under the lock, and a reader
        blocking with the lock held would block every sender), nor once the
        socket is closing. Before ``start()`` registers it, no one else
        reads it either, so a client's first ``recv()`` may read directly.
        """
        if self.direct or self._tls or self.closed or self._closing or not self._reading or not _CAN_POLL:
            return False
        self.direct = threading.get_ident()
        self._lingering = False
        self._apply()
        return True

    def end_direct(self) -> None:
        """The direct reader is done; the socket stays unwatched until ``stop_lingering`` or a reactor tick.

        An application that reads in a loop is back in ``recv()`` within
        microseconds; giving the socket back to the I/O thread in between
        would cost two ``epoll_ctl`` calls per message and, worse, let the I/O
        thread race the application for the next message. If it does not come
        back, the reactor's linger tick hands the socket to the I/O thread
        within one to two ``LINGER`` periods, so pings and close frames are
        still answered while the application does something else.
        """
        self.direct = 0
        if self._abort_pending:
            if not self.writer:
                self.reactor.call_soon(self.abort_now)
        else:
            self._lingering = True
            self._linger_mark = self.reactor.ticks
            if not self._linger_queued:
                self._linger_queued = True
                self.reactor.linger(self)
        self._apply()

    def begin_direct_write(self) -> bool:
        """Make the calling thread flush the output while it waits for room, if it can be; the I/O thread stops.

        A sender waiting for the I/O thread to flush waits for the one thread
        every connection shares, and with many busy handler threads that one
        gets the GIL last: in 1,000 x 300 soaks of the threaded server its
        turn took up to 63 s, and 152 connections whose senders waited on it
        ended with 1011 (issue 15). Flushing on the sender's own thread makes
        a busy connection depend on no one but its own thread. Not for TLS
        (see ``begin_direct``) nor once closing.
        """
        if self.writer or self._tls or self.closed or self._closing or self.failing or not _CAN_POLL:
            return False
        self.writer = True
        self._apply()
        return True

    def end_direct_write(self) -> None:
        """The direct writer is done; what is left of the output is the I/O thread's to flush."""
        self.writer = False
        # A close that waited for this flush (a direct reader is woken by the abort), or an abort for this thread.
        if (self._abort_pending and not self.direct) or (self._closing and not self._out):
            self.reactor.call_soon(self.abort_now)
        self._apply()

    def flush_direct(self) -> None:
        """Write what the kernel takes now (the direct writer, lock held)."""
        self._flush()
        self.protocol.write_drained()

    def stop_lingering(self) -> None:
        """Let the I/O thread read now (lock held): someone waits for what only it would read."""
        if self._lingering:
            self._lingering = False
            self._apply()

    def linger_tick(self, ticks: int) -> bool:
        """The reactor's tick (I/O thread): True to be asked again at the next one.

        A socket whose lock is taken is asked again at the next tick rather
        than waited for. Its application thread holds the lock (sending,
        most likely, right after its ``recv()``), and under load that can
        last seconds: with a thousand busy handler threads, each of the
        holder's GIL releases (compressing, writing) costs it a place in the
        queue for the GIL. In a 1,000 x 300 soak of the threaded server, 37
        of the 43 times the I/O thread was stuck for over 2 s it was here,
        and 199 connections starved of it ended with 1011 (issue 15).
        """
        if not self.lock.acquire(blocking=False):
            return True
        try:
            if self._lingering and self._linger_mark >= ticks - 1:
                return True  # back in recv() recently: give it another period
            self._linger_queued = False
            self.stop_lingering()
            return False
        finally:
            self.lock.release()

    def _apply(self) -> None:
        """Bring the poller's interest in line with the state; any thread, lock held."""
        if self.closed or self._interest is None:
            return
        if self._handshaking:
            wanted = self._handshaking
        else:
            wanted = IN if self._reading and not (self._closing or self.direct or self._lingering) else 0
            if self._out and not self.writer:
                wanted |= OUT
            if not wanted & IN:
                wanted |= ONESHOT
        current = self._interest
        if wanted == current or (wanted == ONESHOT and current == _DISARMED):
            return
        if self.reactor.threadsafe or self.reactor.in_thread:
            self._interest = wanted
            self.reactor.set_events(self.fd, wanted)
        else:
            self.reactor.call_soon(self._apply_locked)

    def _apply_locked(self) -> None:
        if not self.lock.acquire(blocking=False):
            # Not waited for, as in linger_tick; the change is worked out anew when it runs.
            self.reactor.call_later(LOCK_RETRY, self._apply_locked)
            return
        try:
            self._interest = 0  # forces the change through, on the I/O thread
            self._apply()
        finally:
            self.lock.release()

    def _fail_write(self, exc: OSError) -> None:
        logger.debug("write failed (%s); dropping the connection", exc)
        self._broken = True
        self._out.clear()
        self._out_size = 0
        self.reactor.call_soon(self.abort_now)

    # ----------------------------------------------- any thread, lock free

    # These go through the reactor's queue even from the I/O thread: their
    # callers may hold ``lock``, which closing takes.

    def close(self) -> None:
        """Close once the queued output is flushed; abort after the close timeout if it is not."""
        self.reactor.call_soon(self._close)

    def abort(self) -> None:
        """Close now, dropping queued output."""
        self.reactor.call_soon(self.abort_now)

    def close_here(self) -> bool:
        """Close on the calling thread, not the I/O thread, if nothing is left to flush: True if it did.

        A server's handler thread that read the peer's close frame closes
        TCP itself, so the peer's wait for it (RFC 6455 has the server close
        first) does not queue behind everything else the shared I/O thread
        has to do; in the 1,000-client soak, closing handshakes waited up to
        95 s for it (issue 15). The descriptor is unregistered before it
        is closed, so the I/O thread cannot see its number reused for a
        socket it still takes for this one, and it reads this transport's
        sockets only under the lock, finding it closed. ``connection_lost``
        still runs on the I/O thread, where its contract puts it. Not while
        output waits for a flush (the close waits for it, with a timeout:
        the I/O thread's), while another thread reads or writes the socket
        directly, before the socket is registered, nor with the selectors poller.
        """
        with self.lock:
            if (
                self.closed
                or self._closing
                or self._out
                or self.writer
                or self.direct not in (0, threading.get_ident())
                or self._interest is None
                or not self.reactor.threadsafe
            ):
                return False
            self.closed = True
            self._interest = None
            try:
                self.reactor.unregister(self.sock)
            except (ValueError, OSError):
                pass  # the reactor has stopped and closed its poller
            self.sock.close()
        self.reactor.call_soon(self.protocol.connection_lost)
        return True

    # -- direct readers and writers, between begin_ and end_, without the lock

    def wait_readable(self, timeout: float | None) -> bool:
        return self._wait_for(select.POLLIN, timeout)

    def wait_writable(self, timeout: float | None) -> bool:
        return self._wait_for(select.POLLOUT, timeout)

    def _wait_for(self, event: int, timeout: float | None) -> bool:
        poller = select.poll()
        poller.register(self.fd, event)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))

    def read_direct(self, timeout: float | None) -> memoryview | bytes | None:
        """What came, waiting at most ``timeout`` for it: ``b""`` at the end of the stream, ``None`` if nothing did.

        A read that filled its buffer most likely left more in the kernel, so
        the next one is tried before polling: one poll(2) fewer per buffer
        of a stream. With 64 KiB buffers, the threaded client's CPU per
        pipelined 64 KiB message went from 47.4 to 40.8 us (medians of five
        alternated runs).
        """
        if self._read_full and (data := self.recv_direct()) is not None:
            return data
        return self.recv_direct() if self.wait_readable(timeout) else None

    def recv_direct(self) -> memoryview | bytes | None:
        """What came, ``b""`` at the end of the stream (or a reset), ``None`` when there is nothing yet.

        What came is a view of a shared buffer: ``recycle()`` once the core has taken its bytes.
        """
        try:
            buffer = _spare_buffers.pop()  # atomic: another thread may take the last one between a test and a pop
        except IndexError:
            buffer = memoryview(bytearray(DIRECT_READ_SIZE))
        try:
            count = self.sock.recv_into(buffer)
        except _RETRY:
            self._read_full = False
            _give_back(buffer)
            return None
        except OSError as exc:
            logger.debug("read failed (%s)", exc)
            count = 0
        if not count:
            _give_back(buffer)
            return b""
        self._read_full = count == DIRECT_READ_SIZE
        self._read_into = buffer
        return buffer[:count]

    def recycle(self) -> None:
        """Give the buffer of the last direct read back, for the next one: nothing may refer to it any more."""
        buffer, self._read_into = self._read_into, None
        if buffer is not None:
            _give_back(buffer)

    # -------------------------------------------------- the I/O thread

    def start(self) -> None:
        """Register with the reactor (once) and read, again after a handler paused it."""
        with self.lock:
            if self.closed:
                return
            if self._interest is None:
                # Registered before ``_interest`` says so, both under the lock:
                # a thread in ``_apply`` (epoll is thread-safe) would otherwise
                # modify a descriptor the poller does not know yet (ENOENT).
                interest = self._handshaking or ONESHOT
                self.reactor.register(self.sock, interest, self)
                self._interest = interest
            self.resume_reading()

    def tls_pending(self) -> bool:
        """Decrypted bytes wait in OpenSSL, which a poll does not see (I/O thread)."""
        return self._tls and not self.closed and self.sock.pending() > 0  # type: ignore[attr-defined]

    def read_ready(self) -> None:
        if self._handshaking:
            self._handshake_step()
            return
        after = None
        eof = reset = more = False
        with self.lock:
            if self._interest is not None and self._interest & ONESHOT:
                self._interest = _DISARMED
            if self.closed or self.direct or not self._reading or self._closing:
                self._apply()
                return
            try:
                count = self.sock.recv_into(self.reactor.buffer, READ_SIZE)
            except _RETRY:
                return
            except _EOF:
                count = 0
            except OSError as exc:
                logger.debug("read failed (%s)", exc)
                count, reset = 0, True
            if count:
                after = self.protocol.data_received(self.reactor.view[:count])
                more = self._tls and self.sock.pending() > 0  # type: ignore[attr-defined]
            else:
                eof = True
                self.protocol.eof_received()
        if after is not None:
            after()
        if eof:
            if reset:
                self.abort_now()
            else:
                self._close()
        elif more:
            self.reactor.call_soon(self.read_ready)

    def write_ready(self) -> None:
        if self._handshaking:
            self._handshake_step()
            return
        with self.lock:
            if self._interest is not None and self._interest & ONESHOT:
                self._interest = _DISARMED
            if self.closed:
                return
            self._flush()
            self.protocol.write_drained()
            done = not self._out
            self._apply()
        if done and self._closing:
            self.abort_now()

    def _flush(self) -> None:
        """Write queued output until the kernel refuses more (lock held)."""
        out = self._out
        while out:
            head = out[0]
            try:
                sent = self.sock.send(head)
            except _RETRY:
                return
            except OSError as exc:
                self._fail_write(exc)
                return
            self._out_size -= sent
            if sent < len(head):
                out[0] = memoryview(head)[sent:]
                return
            del out[0]

    def _handshake_step(self) -> None:
        """Advance a server-side TLS handshake without blocking."""
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.do_handshake()  # type: ignore[attr-defined]
            except ssl.SSLWantReadError:
                self._handshaking = IN
            except ssl.SSLWantWriteError:
                self._handshaking = OUT
            except OSError as exc:  # ssl.SSLError included: a bad certificate, plain HTTP on a TLS port
                logger.debug("TLS handshake failed: %s", exc)
                self._broken = True
            else:
                self._handshaking = 0
                self._flush()
            self._apply()
            done = not self._handshaking
        if self._broken:
            self.abort_now()
        elif done:
            self.read_ready()

    def _close(self) -> None:
        with self.lock:
            if self.closed or self._closing:
                return
            self._closing = True
            pending = bool(self._out) and not self._broken
            self._apply()
        if not pending:
            self.abort_now()
        elif self._close_timeout is not None:
            self._close_timer = self.reactor.call_later(self._close_timeout, self.abort_now)

    def abort_now(self) -> None:
        """``abort`` for the I/O thread, when it does not hold ``lock``."""
        with self.lock:
            if self.closed:
                return
            if self.direct or self.writer:
                # A thread waits on this descriptor: wake it rather than close
                # under it; end_direct() or end_direct_write() brings us back
                # here. Shutting down the receiving side ends a reader's poll
                # without a word to the peer; a writer's poll ends only when
                # the sending side is shut down too (a FIN, which the close
                # would send anyway).
                self._abort_pending = True
                try:
                    self.sock.shutdown(socket.SHUT_RDWR if self.writer else socket.SHUT_RD)
                except OSError:
                    pass
                return
            self.closed = True
            self._out.clear()
            self._out_size = 0
            registered = self._interest is not None
            self._interest = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if registered:
            try:
                self.reactor.unregister(self.sock)
            except (KeyError, ValueError, OSError):
                pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.protocol.connection_lost()
