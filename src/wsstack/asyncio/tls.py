"""TLS for asyncio's own loops, over ``ssl.SSLObject`` and two memory BIOs, at kilobytes per connection.

asyncio's TLS (``sslproto``) gives every connection a 256 KiB read buffer
of its own: an idle wss:// connection held 287 KiB of server RSS, against
7 KiB for ws://. Here OpenSSL decrypts into one scratch buffer per thread,
shared by every connection of the thread's loop (a loop runs one callback at
a time, and the inner protocol, given a view of it as for a plain socket's
reads, copies what it keeps before it returns), and ciphertext goes straight
to the socket transport, whose buffer is the only one that grows, and only
while the peer is slow. An idle wss://
connection then costs about what OpenSSL's own state does (figures in
docs/benchmarks.md, ``benchmarks/echo_tls.py``).

uvloop keeps its own TLS (``ssl=`` on its calls): it is small already, and
its transports are not asyncio's. In one run of the benchmark an idle
wss:// connection cost 24.5 KiB of server RSS here, 51 KiB on uvloop and
283 KiB with sslproto (1 KiB round trips: 1.16x sslproto's rate here).

``TLSTransport`` is at once the protocol on the socket transport and the
transport the inner protocol (the server's HTTP protocol, the client's, the
WebSocket) writes to: one object per connection instead of two.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from .scratch import SIZE, scratch

__all__ = ["TLSTransport", "accept", "connect", "own_tls"]

logger = logging.getLogger("wsstack")

#: The most plaintext a TLS record holds.
RECORD_SIZE = 16384
#: Writes go to OpenSSL, and whole records to the incoming BIO, in pieces
#: of at most five records, so that a 64 KiB message and its frame header
#: are one call. Each BIO keeps the largest piece it held (see
#: ``_next_record``): 80 KiB at most, once that much came or went at once.
#: Writing a record at a time, the server spent 97 us of CPU per pipelined
#: 64 KiB echo, more than asyncio's TLS (92 us); writing in pieces, 89-95
#: us; then reading in pieces too, 118 against 138 us in a slower hour in
#: which asyncio's TLS took 113 (medians, docs/benchmarks.md).
PIECE_SIZE = 5 * RECORD_SIZE
#: The first byte of a TLS record: change_cipher_spec, alert, handshake, application_data.
_CONTENT_TYPES = frozenset((20, 21, 22, 23))

#: Set by benchmarks/echo_tls.py only, to measure asyncio's TLS beside this one in one process.
_force_sslproto = False


def own_tls(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether connections on ``loop`` use this module: asyncio's loops yes, uvloop no (see above)."""
    return isinstance(loop, asyncio.BaseEventLoop) and not _force_sslproto


class TLSTransport(asyncio.Transport, asyncio.Protocol):
    """One TLS connection: the socket transport's protocol, and the inner protocol's transport."""

    __slots__ = (
        "_loop",
        "_context",
        "_sslobj",
        "_incoming",
        "_outgoing",
        "_factory",
        "_inner",
        "_sock_transport",
        "_waiter",
        "_timer",
        "_handshaking",
        "_closing",
        "_reading",
        "_read_scheduled",
        "_write_paused",
        "_eof",
        "_eof_fed",
        "_cipher",
        "_cipher_pos",
        "_completed",
        "_backlog",
        "_backlog_size",
        "_error",
        "_end_seen",
        "_end_delivered",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        context: ssl.SSLContext,
        factory: Callable[[], asyncio.BaseProtocol],
        *,
        server_side: bool,
        server_hostname: str | None,
        handshake_timeout: float | None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._context = context
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._factory: Callable[[], asyncio.BaseProtocol] | None = factory
        self._inner: Any = None
        self._sock_transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        if handshake_timeout is not None:
            self._timer = loop.call_later(handshake_timeout, self._handshake_timed_out, handshake_timeout)
        self._handshaking = True
        self._closing = False
        #: The inner protocol wants data (``pause_reading`` holds what OpenSSL has already read, too).
        self._reading = True
        self._read_scheduled = False
        self._write_paused = False
        #: The socket's read side ended; OpenSSL is told once it has every record before the end.
        self._eof = False
        self._eof_fed = False
        #: Ciphertext not given to OpenSSL yet, from ``_cipher_pos`` on (see ``_next_record``).
        self._cipher = b""
        self._cipher_pos = 0
        #: A record that came in two reads, put together; it goes to OpenSSL before ``_cipher``.
        self._completed = b""
        #: Plaintext OpenSSL would not take yet (a TLS 1.2 renegotiation waits for the peer's
        #: answer): written, in order, after the next read.
        self._backlog: list[bytes] = []
        self._backlog_size = 0
        #: What ended the connection, for the inner protocol's ``connection_lost``.
        self._error: Exception | None = None
        #: The peer's stream ended; the inner protocol is told once, and never while it paused reading.
        self._end_seen = False
        self._end_delivered = False

    # ---------------------------------------------- the socket transport's protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sock_transport = transport  # type: ignore[assignment]
        self._handshake()

    def data_received(self, data: bytes) -> None:
        cipher, pos = self._cipher, self._cipher_pos
        size = len(cipher)
        if pos == size:
            self._cipher, self._cipher_pos = data, 0
        elif not self._completed and size - pos >= 5 and cipher[pos] in _CONTENT_TYPES:
            # Most reads end inside a record: put together only that record (16 KiB at
            # most), not the whole read behind it, which stays where it is.
            missing = pos + 5 + (cipher[pos + 3] << 8 | cipher[pos + 4]) - size
            if 0 < missing <= len(data):  # <= 0: whole records wait here behind a paused reader
                self._completed = cipher[pos:] + data[:missing]
                self._cipher, self._cipher_pos = data, missing
            else:
                self._cipher, self._cipher_pos = cipher[pos:] + data, 0
        else:
            self._cipher, self._cipher_pos = cipher[pos:] + data, 0
        self._process()

    def eof_received(self) -> bool:
        self._eof = True
        self._process()
        return True  # the socket stays open until the inner protocol has seen the end

    def _process(self) -> None:
        while self._handshaking and self._next_record():
            self._handshake()
        if not self._handshaking:
            self._read()

    def _next_record(self) -> bool:
        """Move complete TLS records into the incoming BIO, ``PIECE_SIZE`` at most; False if there is none yet.

        A ``MemoryBIO`` keeps the largest size it ever held until it is
        freed: fed a 1 MiB burst, it holds 1 MiB for the rest of the
        connection (measured: 1,033 KiB of RSS per BIO after a 1 MiB write,
        20 KiB after the same megabyte in 16 KiB writes). Fed whole records
        up to ``PIECE_SIZE`` (or one larger record) at a time, it never
        grows beyond that; the part of a record still coming waits here, in a
        ``bytes`` of its own size. Several records in one call are one call
        fewer each than a record at a time (the four of a 64 KiB message).
        """
        if self._completed:
            self._incoming.write(self._completed)
            self._completed = b""
            return True
        cipher, pos = self._cipher, self._cipher_pos
        size = len(cipher)
        if size - pos >= 5:
            if cipher[pos] in _CONTENT_TYPES:
                end = pos
                while end + 5 <= size and cipher[end] in _CONTENT_TYPES:
                    after = end + 5 + (cipher[end + 3] << 8 | cipher[end + 4])
                    if after > size or (end > pos and after - pos > PIECE_SIZE):
                        break
                    end = after
            else:
                end = size  # not TLS (plain HTTP on a TLS port, say): all of it, for OpenSSL to say so
            if end > pos:
                self._incoming.write(cipher if pos == 0 and end == size else memoryview(cipher)[pos:end])
                if end == size:
                    self._cipher, self._cipher_pos = b"", 0
                else:
                    self._cipher_pos = end
                return True
        if self._eof and not self._eof_fed:
            self._eof_fed = True
            if pos < size:
                self._incoming.write(memoryview(cipher)[pos:])  # a truncated record: OpenSSL reports it
            self._cipher, self._cipher_pos = b"", 0
            self._incoming.write_eof()
            return True
        if pos:
            self._cipher, self._cipher_pos = cipher[pos:], 0  # frees the chunk the partial record came in
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        if self._handshaking:
            self._handshaking = False
            if not self._waiter.done():
                self._waiter.set_exception(exc or ConnectionResetError("connection lost during the TLS handshake"))
        elif self._inner is not None:
            inner, self._inner = self._inner, None
            inner.connection_lost(exc or self._error)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._inner is not None:
            self._inner.resume_writing()

    # ---------------------------------------------- TLS

    def _handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            if self._eof_fed:
                self._fail(ConnectionResetError("the peer closed the connection during the TLS handshake"))
            return
        except (ssl.SSLError, OSError) as exc:
            self._flush()  # the alert, which tells the peer why
            self._fail(exc, graceful=True)
            return
        self._flush()
        self._handshaking = False
        self._cancel_timer()
        if self._waiter.done():
            return  # cancelled (a server shutting down): _start aborts the connection
        self._waiter.set_result(None)
        factory, self._factory = self._factory, None
        assert factory is not None
        self._inner = factory()
        self._inner.connection_made(self)
        if self._write_paused and self._inner is not None:
            self._inner.pause_writing()

    def _read(self) -> None:
        """Decrypt record after record into the scratch buffer; the inner protocol gets it in as few calls as fit."""
        view = scratch()
        sslobj, incoming = self._sslobj, self._incoming
        filled = 0
        end = False
        error: Exception | None = None
        while self._reading and self._inner is not None and not self._closing:
            # Checked before reading: a read that finds nothing raises SSLWantReadError, which
            # costs 1.0 us, these checks 0.1 us.
            if not (incoming.pending or sslobj.pending() or self._next_record()):
                break
            try:
                # With a buffer, read() returns a count (typeshed says bytes).
                n: int = sslobj.read(SIZE - filled, view[filled:])  # type: ignore[assignment]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue  # a record with no application data (a session ticket, a key update)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                end = True  # after the peer's close_notify (ZeroReturn), or a TCP end without one (EOF)
                break
            except ssl.SSLError as exc:
                error = exc
                break
            if not n:
                end = True  # the peer's close_notify: CPython reads it as 0 bytes, not SSLZeroReturnError
                break
            filled += n
            if filled == SIZE:
                self._inner.data_received(view)
                filled = 0
        self._flush()  # what OpenSSL answers by itself (key updates)
        if filled and self._inner is not None:
            self._inner.data_received(view[:filled])
        if error is not None:
            logger.debug("TLS error: %s", error)
            self._fail(error)
            return
        if self._backlog:
            self._write_backlog()
        if end:
            self._end_seen = True
        if self._end_seen:
            self._end_of_stream()

    def _end_of_stream(self) -> None:
        """Tell the inner protocol, once, and not while it paused reading (asyncio's transports never do)."""
        inner = self._inner
        if inner is None or self._closing or self._end_delivered or not self._reading:
            return
        self._end_delivered = True
        if not inner.eof_received():
            self.close()

    def _flush(self) -> None:
        if self._outgoing.pending and self._sock_transport is not None:
            self._sock_transport.write(self._outgoing.read())

    def _handshake_timed_out(self, timeout: float) -> None:
        self._timer = None
        self._fail(TimeoutError(f"TLS handshake not done within {timeout} s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, exc: Exception, graceful: bool = False) -> None:
        """Drop the connection; ``graceful`` lets the alert just flushed reach the peer first."""
        self._cancel_timer()
        if self._handshaking:
            self._handshaking = False
            if not self._waiter.done():
                self._waiter.set_exception(exc)
        self._error = exc
        self._closing = True
        if self._sock_transport is not None:
            if graceful:
                self._sock_transport.close()
            else:
                self._sock_transport.abort()

    # ---------------------------------------------- the inner protocol's transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing or self._inner is None:
            return
        if self._backlog:
            self._hold(bytes(data))
            return
        if len(data) <= PIECE_SIZE:
            try:
                self._sslobj.write(data)
            except ssl.SSLWantReadError:
                self._hold(bytes(data))
            except ssl.SSLError as exc:
                logger.debug("TLS error: %s", exc)
                self._fail(exc)
                return
            self._flush()
            return
        self._encrypt(memoryview(data))

    def _encrypt(self, view: memoryview) -> None:
        """A piece at a time, so that the outgoing BIO stays small (see ``PIECE_SIZE``)."""
        sslobj, outgoing = self._sslobj, self._outgoing
        pieces = []
        start = 0
        try:
            while start < len(view):
                sslobj.write(view[start : start + PIECE_SIZE])
                pieces.append(outgoing.read())
                start += PIECE_SIZE
        except ssl.SSLWantReadError:
            self._hold(bytes(view[start:]))
        except ssl.SSLError as exc:
            logger.debug("TLS error: %s", exc)
            self._fail(exc)
            return
        assert self._sock_transport is not None
        if pieces:
            self._sock_transport.write(b"".join(pieces))
        self._flush()  # a renegotiation's own messages, after the records before them

    def _hold(self, data: bytes) -> None:
        self._backlog.append(data)
        self._backlog_size += len(data)

    def _write_backlog(self) -> None:
        """After a read: what OpenSSL refused during a renegotiation goes out now, or waits again."""
        backlog, self._backlog, self._backlog_size = self._backlog, [], 0
        for data in backlog:
            if self._backlog or self._closing:
                self._hold(data)
            else:
                self._encrypt(memoryview(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        """Send close_notify, then close TCP once what is buffered is sent; the peer's is not awaited."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if not self._handshaking:
            try:
                self._sslobj.unwrap()
            except ssl.SSLError:
                pass  # SSLWantReadError: ours went out, the peer's has not come, which is not waited for
            self._flush()
        if self._sock_transport is not None:
            self._sock_transport.close()

    def abort(self) -> None:
        self._closing = True
        self._cancel_timer()
        if self._sock_transport is not None:
            self._sock_transport.abort()

    def is_closing(self) -> bool:
        return self._closing or self._sock_transport is None or self._sock_transport.is_closing()

    def pause_reading(self) -> None:
        self._reading = False
        if self._sock_transport is not None:
            self._sock_transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        if self._sock_transport is not None:
            self._sock_transport.resume_reading()
        if not self._read_scheduled:
            # What OpenSSL holds already does not make the socket readable; later, not inside the caller.
            self._read_scheduled = True
            self._loop.call_soon(self._scheduled_read)

    def _scheduled_read(self) -> None:
        self._read_scheduled = False
        self._read()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._sock_transport is not None:
            self._sock_transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        held = self._backlog_size
        return held if self._sock_transport is None else held + self._sock_transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        assert self._sock_transport is not None
        return self._sock_transport.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner  # type: ignore[no-any-return]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._sslobj
        if name == "sslcontext":
            return self._context
        if name == "peercert":
            return self._sslobj.getpeercert()
        if name == "cipher":
            return self._sslobj.cipher()
        if name == "compression":
            return self._sslobj.compression()
        if self._sock_transport is None:
            return default
        return self._sock_transport.get_extra_info(name, default)


async def _start(sock: socket.socket, tls: TLSTransport, connecting: Callable[[], Any]) -> TLSTransport:
    """Run the handshake; on any failure (a cancellation too) nothing is left open."""
    try:
        await connecting()
    except BaseException:
        tls._waiter.cancel()  # the handshake may have begun: its end is nobody's to hear now
        sock.close()
        raise
    try:
        await tls._waiter
    except BaseException:
        tls.abort()
        raise
    return tls


async def accept(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    context: ssl.SSLContext,
    factory: Callable[[], asyncio.BaseProtocol],
    handshake_timeout: float | None,
) -> TLSTransport:
    """Serve TLS on an accepted socket; ``factory``'s protocol is made once the handshake is done.

    Raises what ended the handshake: ``ssl.SSLError``, ``ConnectionError``,
    or ``TimeoutError`` after ``handshake_timeout`` seconds.
    """
    tls = TLSTransport(
        loop, context, factory, server_side=True, server_hostname=None, handshake_timeout=handshake_timeout
    )
    return await _start(sock, tls, lambda: loop.connect_accepted_socket(lambda: tls, sock))


async def connect(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str,
    factory: Callable[[], asyncio.BaseProtocol],
) -> TLSTransport:
    """TLS as a client on a connected socket (which this owns from now on); the caller bounds the time."""
    tls = TLSTransport(
        loop, context, factory, server_side=False, server_hostname=server_hostname, handshake_timeout=None
    )
    return await _start(sock, tls, lambda: loop.create_connection(lambda: tls, sock=sock))
