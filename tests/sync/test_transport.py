"""The transport on its own, over ``socket.socketpair()``, with a protocol that only takes notes.

One end of the pair is the transport's; the test holds the other, as the
peer, and decides when that peer reads. Every test runs on both pollers
(the ``reactor`` fixture). The recording protocol also checks the contract
transport.py states: which thread calls it, and whether the lock is held.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import Callable

import pytest

from sync_helpers import STEP, TLSContexts, on_io_thread
from waiting import bounded, wait_until
from wsstack.sync.reactor import LINGER, Reactor
from wsstack.sync.transport import DIRECT_READ_SIZE, Transport

MiB = 1 << 20

#: Our end of a socketpair, then the peer's.
Pair = tuple[socket.socket, socket.socket]


class Recorder:
    """A ``TransportProtocol`` that writes down what it is told, and where it was told it."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.transport: Transport
        self.data = bytearray()
        self.data_threads: set[int] = set()
        self.changed = threading.Condition()
        self.eof = threading.Event()
        self.lost = threading.Event()
        self.lost_count = 0
        self.drained = 0
        self.drained_event = threading.Event()
        self.after_runs: list[bool] = []  # whether the lock was free when the returned work ran
        self.broken: list[str] = []  # contract violations, asserted empty by the tests
        self.fail_next_read = False
        self.pause_after_next_read = False

    def data_received(self, data: memoryview | bytes) -> Callable[[], None] | None:
        if not self.transport.lock.locked():
            self.broken.append("data_received without the lock")
        if self.fail_next_read:
            self.fail_next_read = False
            raise RuntimeError("a broken protocol")
        with self.changed:
            self.data += data  # a copy: the reactor's buffer is reused by the next read
            self.data_threads.add(threading.get_ident())
            self.changed.notify_all()
        if self.pause_after_next_read:
            self.pause_after_next_read = False
            self.transport.pause_reading()  # as a full message queue does
        return lambda: self.after_runs.append(not self.transport.lock.locked())

    def eof_received(self) -> None:
        if not self.transport.lock.locked():
            self.broken.append("eof_received without the lock")
        self.eof.set()

    def connection_lost(self) -> None:
        if not self.reactor.in_thread:
            self.broken.append("connection_lost off the I/O thread")
        if self.transport.lock.locked():
            self.broken.append("connection_lost with the lock held")
        self.lost_count += 1
        self.lost.set()

    def write_drained(self) -> None:
        if not self.reactor.in_thread:
            self.broken.append("write_drained off the I/O thread")
        if not self.transport.lock.locked():
            self.broken.append("write_drained without the lock")
        self.drained += 1
        self.drained_event.set()

    def wait_for_bytes(self, count: int) -> bytes:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.data) >= count, STEP), (len(self.data), count)
            return bytes(self.data)


def open_transport(
    reactor: Reactor, sock: socket.socket, *, close_timeout: float | None = None, tls_handshake: bool = False
) -> tuple[Transport, Recorder]:
    """A started transport on ``sock`` with a ``Recorder`` as its protocol."""
    sock.setblocking(False)
    recorder = Recorder(reactor)
    transport = Transport(sock, reactor, recorder, close_timeout=close_timeout, tls_handshake=tls_handshake)
    recorder.transport = transport
    on_io_thread(reactor, transport.start)
    return transport, recorder


def write(transport: Transport, data: bytes) -> None:
    with transport.lock:
        transport.write(data)


def buffered(transport: Transport) -> int:
    with transport.lock:
        return transport.buffered


def unread(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s receive queue (FIONREAD)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


def read_exactly(sock: socket.socket, count: int) -> bytes:
    sock.settimeout(STEP)
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 16))
        if not chunk:
            raise EOFError(len(data))
        data += chunk
    return bytes(data)


def read_to_end(sock: socket.socket) -> bytes:
    sock.settimeout(STEP)
    data = bytearray()
    while chunk := sock.recv(1 << 16):
        data += chunk
    return bytes(data)


def small_buffers(ours: socket.socket, peer: socket.socket) -> None:
    """Kernel buffers far smaller than the writes, so a peer that does not read holds writes back at once."""
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)


def held_back(reactor: Reactor, socket_pair: Pair, close_timeout: float) -> tuple[Transport, Recorder, bytes]:
    """A transport with a MiB written to a peer that has not read yet: most of it waits in the transport."""
    ours, peer = socket_pair
    small_buffers(ours, peer)
    transport, recorder = open_transport(reactor, ours, close_timeout=close_timeout)
    payload = os.urandom(MiB)
    write(transport, payload)
    assert buffered(transport) > 0
    return transport, recorder, payload


# -- reading


@bounded(30)
def test_a_thread_changing_interest_while_start_registers_waits_for_the_registration(
    reactor: Reactor, socket_pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client reads its handshake answer directly, before start(); closing at
    # once then asks the poller to watch a descriptor that start() is still
    # registering. That used to fail with ENOENT from epoll_ctl (seen in CI).
    ours, peer = socket_pair
    ours.setblocking(False)
    recorder = Recorder(reactor)
    transport = Transport(ours, reactor, recorder, close_timeout=None)
    recorder.transport = transport
    assert transport.begin_direct()
    transport.end_direct()  # lingering: the I/O thread does not read until told to
    registering = threading.Event()
    register = reactor.register

    def slow_register(*args: object) -> None:
        registering.set()
        time.sleep(0.2)  # widens the window the race needs
        register(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(reactor, "register", slow_register)
    reactor.call_soon(transport.start)
    assert registering.wait(STEP)
    with transport.lock:
        transport.stop_lingering()
    peer.sendall(b"after")
    assert recorder.wait_for_bytes(5) == b"after"
    assert not recorder.broken


@bounded(30)
def test_bytes_from_the_peer_reach_the_protocol_on_the_io_thread(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    _, recorder = open_transport(reactor, ours)
    payload = os.urandom(3 * MiB)  # more than one read of the reactor's buffer
    peer.sendall(payload)
    assert recorder.wait_for_bytes(len(payload)) == payload
    assert recorder.data_threads == {on_io_thread(reactor, threading.get_ident)}
    wait_until(lambda: len(recorder.after_runs) > 0, STEP)
    assert all(recorder.after_runs)  # the work data_received returned ran once the lock was free
    assert recorder.broken == [] and not recorder.eof.is_set()


@bounded(30)
def test_end_of_stream_after_the_last_bytes_closes_the_transport(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    peer.sendall(b"last words")
    peer.shutdown(socket.SHUT_WR)
    assert recorder.eof.wait(STEP)
    assert recorder.wait_for_bytes(10) == b"last words"
    assert recorder.lost.wait(STEP)
    assert transport.closed and recorder.lost_count == 1
    assert read_to_end(peer) == b""  # closed on our side too
    assert recorder.broken == []


@bounded(30)
def test_paused_reading_leaves_the_bytes_in_the_kernel_until_resumed(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    with transport.lock:
        transport.pause_reading()  # from this thread: any thread may, with the lock
    peer.sendall(b"held back")
    # Nothing to wait for: a paused transport must leave the bytes alone for a while.
    time.sleep(0.1)
    assert recorder.data == b"" and unread(ours) == 9
    with transport.lock:
        transport.resume_reading()
    assert recorder.wait_for_bytes(9) == b"held back"
    assert recorder.broken == []


@bounded(30)
def test_a_failing_protocol_gets_its_connection_dropped(
    reactor: Reactor, socket_pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    recorder.fail_next_read = True
    with caplog.at_level(logging.ERROR, logger="wsstack"):
        peer.sendall(b"boom")
        assert recorder.lost.wait(STEP)
    assert any("dropping the connection" in r.getMessage() for r in caplog.records)
    assert transport.closed and read_to_end(peer) == b""
    assert not transport.lock.locked()  # released on the way out of the exception


# -- writing


@bounded(30)
def test_a_write_the_kernel_takes_goes_out_at_once(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    write(transport, b"hello")
    assert buffered(transport) == 0
    assert read_exactly(peer, 5) == b"hello"
    assert recorder.drained == 0  # nothing was queued, so nothing drained


@bounded(30)
def test_a_peer_that_does_not_read_holds_writes_in_order_until_it_does(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    small_buffers(ours, peer)
    transport, recorder = open_transport(reactor, ours)
    payload = os.urandom(2 * MiB)
    for offset in range(0, len(payload), 65536):
        write(transport, payload[offset : offset + 65536])
    with transport.lock:
        # What the kernel refused waits here; what it took is in the peer's queue.
        held = transport.buffered
        assert 0 < held < len(payload)
        assert held + unread(peer) == len(payload)
    assert recorder.drained == 0

    received = read_exactly(peer, 256 * 1024)
    assert recorder.drained_event.wait(STEP)  # the peer made room: the I/O thread flushed some
    wait_until(lambda: buffered(transport) < held, STEP)
    with transport.lock:
        assert transport.buffered + unread(peer) + len(received) == len(payload)

    received += read_exactly(peer, len(payload) - len(received))
    assert received == payload
    wait_until(lambda: buffered(transport) == 0, STEP)
    drained = recorder.drained
    # Nothing to wait for: with the queue empty, the socket must stop being watched for output.
    time.sleep(0.1)
    assert recorder.drained == drained
    assert recorder.broken == []


@bounded(60)
def test_writes_from_many_threads_arrive_whole_and_in_each_threads_order(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    small_buffers(ours, peer)
    transport, _ = open_transport(reactor, ours)
    threads_count, per_thread, size = 6, 300, 1000
    start = threading.Barrier(threads_count + 1, timeout=STEP)

    def writer(tid: int) -> None:
        start.wait()
        for seq in range(per_thread):
            head = f"{tid}:{seq}:".encode()
            write(transport, head + bytes([65 + tid]) * (size - len(head)))

    threads = [threading.Thread(target=writer, args=(tid,)) for tid in range(threads_count)]
    for thread in threads:
        thread.start()
    start.wait()
    data = read_exactly(peer, threads_count * per_thread * size)
    for thread in threads:
        thread.join(STEP)
    expected = [0] * threads_count
    for offset in range(0, len(data), size):
        chunk = data[offset : offset + size]
        tid, seq, body = chunk.split(b":", 2)
        t = int(tid)
        assert int(seq) == expected[t]
        assert body == bytes([65 + t]) * len(body)
        expected[t] += 1
    assert expected == [per_thread] * threads_count


@bounded(30)
def test_a_write_to_a_vanished_peer_drops_the_connection(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    with transport.lock:
        transport.pause_reading()  # so that the write, not the end of the stream, finds the peer gone
    peer.close()
    write(transport, b"anyone there?" * 1000)
    assert recorder.lost.wait(STEP)
    assert transport.closed and buffered(transport) == 0
    write(transport, b"after the end")  # ignored, not an error
    assert recorder.lost_count == 1 and recorder.broken == []


# -- closing


@bounded(30)
def test_close_flushes_what_is_queued_then_closes(reactor: Reactor, socket_pair: Pair) -> None:
    transport, recorder, payload = held_back(reactor, socket_pair, STEP)
    peer = socket_pair[1]
    transport.close()  # from this thread, without the lock
    assert read_to_end(peer) == payload  # every byte, then the end of the stream
    assert recorder.lost.wait(STEP)
    assert recorder.lost_count == 1 and recorder.broken == []
    assert not recorder.eof.is_set()  # we closed; the peer never did


@bounded(30)
def test_close_with_nothing_queued_is_immediate(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours, close_timeout=STEP)
    write(transport, b"short")
    transport.close()
    assert recorder.lost.wait(STEP)
    assert read_to_end(peer) == b"short"
    transport.close()  # twice is harmless
    transport.abort()
    assert on_io_thread(reactor, lambda: recorder.lost_count) == 1


@bounded(30)
def test_close_gives_up_after_the_close_timeout_when_the_peer_never_reads(reactor: Reactor, socket_pair: Pair) -> None:
    transport, recorder, payload = held_back(reactor, socket_pair, 0.3)
    peer = socket_pair[1]
    started = time.monotonic()
    transport.close()
    assert recorder.lost.wait(STEP)
    assert 0.25 < time.monotonic() - started < 3
    assert buffered(transport) == 0  # dropped with the connection
    received = read_to_end(peer)
    assert len(received) < len(payload) and payload.startswith(received)
    assert recorder.broken == []


@bounded(30)
def test_abort_drops_what_is_queued(reactor: Reactor, socket_pair: Pair) -> None:
    transport, recorder, payload = held_back(reactor, socket_pair, STEP)
    peer = socket_pair[1]
    started = time.monotonic()
    transport.abort()
    assert recorder.lost.wait(STEP)
    assert time.monotonic() - started < 2
    received = read_to_end(peer)
    assert len(received) < len(payload) and payload.startswith(received)
    assert recorder.lost_count == 1 and recorder.broken == []


# -- direct reads by an application thread


@bounded(30)
def test_a_direct_reader_takes_the_socket_and_gives_it_back(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    with transport.lock:
        assert transport.begin_direct()
        assert not transport.begin_direct()  # one direct reader at a time
    assert not transport.wait_readable(0.05)
    assert transport.recv_direct() is None  # nothing there yet
    peer.sendall(b"for the reader")
    assert transport.wait_readable(STEP)
    assert read_direct(transport, 14) == b"for the reader"
    assert recorder.data == b""  # the I/O thread kept away
    with transport.lock:
        transport.end_direct()
    # Not read again on this thread: within a linger tick or two the I/O thread reads instead.
    peer.sendall(b"for the I/O thread")
    assert recorder.wait_for_bytes(18) == b"for the I/O thread"
    assert recorder.data_threads == {on_io_thread(reactor, threading.get_ident)}
    assert recorder.broken == []


def read_direct(transport: Transport, count: int) -> bytes:
    data = b""
    while len(data) < count:
        assert transport.wait_readable(STEP)
        chunk = transport.recv_direct()
        assert chunk, chunk  # None would be a spurious wake-up, b"" the end
        data += chunk
    return data


@bounded(30)
def test_stop_lingering_hands_the_socket_back_at_once(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    with transport.lock:
        assert transport.begin_direct()
        transport.end_direct()
        transport.stop_lingering()
    peer.sendall(b"now")
    assert recorder.wait_for_bytes(3) == b"now"


@bounded(30)
def test_a_linger_tick_does_not_wait_for_a_lock_in_use(reactor: Reactor, socket_pair: Pair) -> None:
    """While an application thread holds the lock, the I/O thread serves the rest and asks again later."""
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    with transport.lock:
        assert transport.begin_direct()
        transport.end_direct()
        time.sleep(4 * LINGER)  # ticks fall due meanwhile
        # A tick that waited for this lock would hold the I/O thread until it is released.
        assert on_io_thread(reactor, threading.get_ident) != threading.get_ident()
    peer.sendall(b"later")
    assert recorder.wait_for_bytes(5) == b"later"  # handed back at a tick after the release
    assert recorder.data_threads == {on_io_thread(reactor, threading.get_ident)}


@bounded(30)
def test_a_direct_reader_sees_the_end_of_the_stream(reactor: Reactor, socket_pair: Pair) -> None:
    ours, peer = socket_pair
    transport, _ = open_transport(reactor, ours)
    with transport.lock:
        assert transport.begin_direct()
    peer.close()
    assert transport.wait_readable(STEP)
    assert transport.recv_direct() == b""
    with transport.lock:
        transport.end_direct()


@pytest.mark.parametrize("then", ["nothing", "more", "the end"])
@bounded(30)
def test_a_direct_read_that_filled_its_buffer_still_waits_and_reads_what_follows(
    then: str, reactor: Reactor, socket_pair: Pair
) -> None:
    """After a full read the next one tries the socket before polling; when the kernel has nothing, it waits as usual."""
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours)
    with transport.lock:
        assert transport.begin_direct()
    sent = os.urandom(3 * DIRECT_READ_SIZE)  # a whole number of buffers: the last read is full
    sender = threading.Thread(target=peer.sendall, args=(sent,))
    sender.start()
    got = b""
    while len(got) < len(sent):
        chunk = transport.read_direct(STEP)
        assert chunk, chunk
        got += chunk
    assert got == sent
    sender.join()
    started = time.monotonic()
    if then == "nothing":
        assert transport.read_direct(0.2) is None
        assert time.monotonic() - started >= 0.19  # it polled for the whole timeout
    elif then == "more":
        threading.Timer(0.1, peer.sendall, (b"after a pause",)).start()
        assert transport.read_direct(STEP) == b"after a pause"
        assert time.monotonic() - started >= 0.09
    else:
        threading.Timer(0.1, peer.close).start()
        assert transport.read_direct(STEP) == b""
    with transport.lock:
        transport.end_direct()
    assert recorder.data == b""  # the I/O thread kept away throughout


@bounded(30)
def test_no_direct_read_while_paused_or_closing(reactor: Reactor, socket_pair: Pair) -> None:
    transport, recorder, _ = held_back(reactor, socket_pair, STEP)  # keeps the close waiting for the flush
    peer = socket_pair[1]
    with transport.lock:
        transport.pause_reading()
        assert not transport.begin_direct()
        transport.resume_reading()
    transport.close()
    on_io_thread(reactor, lambda: None)  # the close has started on the I/O thread
    with transport.lock:
        assert not transport.begin_direct()
    read_to_end(peer)
    assert recorder.lost.wait(STEP)
    with transport.lock:
        assert not transport.begin_direct()  # nor once closed


@bounded(30)
def test_a_direct_read_may_begin_before_start(reactor: Reactor, socket_pair: Pair) -> None:
    """Before ``start()`` registers it no one else reads the socket, so a client's first ``recv()`` may."""
    ours, peer = socket_pair
    ours.setblocking(False)
    recorder = Recorder(reactor)
    transport = Transport(ours, reactor, recorder, close_timeout=None)
    recorder.transport = transport
    with transport.lock:
        assert transport.begin_direct()
    peer.sendall(b"early")
    assert read_direct(transport, 5) == b"early"
    with transport.lock:
        transport.end_direct()
    on_io_thread(reactor, transport.start)
    peer.sendall(b"then the I/O thread")
    assert recorder.wait_for_bytes(19) == b"then the I/O thread"


@pytest.mark.parametrize("how", ["abort", "close"])
@bounded(30)
def test_a_blocked_direct_reader_wakes_when_the_connection_goes(how: str, reactor: Reactor, socket_pair: Pair) -> None:
    """Aborted from another thread while an application thread waits in a direct read: it returns promptly."""
    ours, peer = socket_pair
    transport, recorder = open_transport(reactor, ours, close_timeout=STEP)
    waiting = threading.Event()
    outcome: dict[str, object] = {}

    def reader() -> None:
        with transport.lock:
            assert transport.begin_direct()
        waiting.set()
        started = time.monotonic()
        outcome["readable"] = transport.wait_readable(STEP)  # without the lock, as WebSocket.recv() waits
        outcome["waited"] = time.monotonic() - started
        outcome["closed under the reader"] = transport.closed
        outcome["data"] = transport.recv_direct()
        with transport.lock:
            transport.end_direct()

    thread = threading.Thread(target=reader)
    thread.start()
    assert waiting.wait(STEP)
    getattr(transport, how)()  # from this thread: neither the reader nor the I/O thread
    thread.join(STEP)
    assert not thread.is_alive()
    assert outcome["readable"] is True and outcome["waited"] < 2, outcome
    assert outcome["closed under the reader"] is False  # the descriptor stays open until end_direct()
    assert outcome["data"] == b""
    assert recorder.lost.wait(STEP)  # end_direct() let the close go on
    assert transport.closed and read_to_end(peer) == b""
    assert recorder.lost_count == 1 and recorder.broken == []


# -- TLS


def tls_transport(
    reactor: Reactor, sock: socket.socket, tls: TLSContexts, greeting: bytes = b""
) -> tuple[Transport, Recorder]:
    """A started server-side TLS transport whose handshake runs on the I/O thread; ``greeting`` written before it."""
    sock.setblocking(False)
    server_side = tls.server.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    recorder = Recorder(reactor)
    transport = Transport(server_side, reactor, recorder, close_timeout=STEP, tls_handshake=True)
    recorder.transport = transport
    write(transport, greeting)  # before the handshake: held until it is done
    on_io_thread(reactor, transport.start)
    return transport, recorder


def tls_pair(reactor: Reactor, socket_pair: Pair, tls: TLSContexts) -> tuple[Transport, Recorder, ssl.SSLSocket]:
    """A TLS transport that said "greeting", and a blocking client that completed the handshake with it."""
    ours, peer = socket_pair
    transport, recorder = tls_transport(reactor, ours, tls, b"greeting")
    peer.settimeout(STEP)
    client = tls.client.wrap_socket(peer, server_hostname="localhost")  # the handshake, on this thread
    return transport, recorder, client


@bounded(30)
def test_tls_both_ways_with_the_handshake_on_the_io_thread(
    reactor: Reactor, socket_pair: Pair, tls: TLSContexts
) -> None:
    transport, recorder, client = tls_pair(reactor, socket_pair, tls)
    with client:
        assert read_exactly(client, 8) == b"greeting"
        upload = os.urandom(MiB)
        client.sendall(upload)
        assert recorder.wait_for_bytes(len(upload)) == upload
        download = os.urandom(MiB)
        write(transport, download)
        assert read_exactly(client, len(download)) == download
        with transport.lock:
            assert not transport.begin_direct()  # OpenSSL is read under the lock only
        transport.close()
        assert recorder.lost.wait(STEP)
    assert recorder.broken == []


@bounded(30)
def test_tls_reading_paused_in_mid_stream_resumes(reactor: Reactor, socket_pair: Pair, tls: TLSContexts) -> None:
    transport, recorder, client = tls_pair(reactor, socket_pair, tls)
    with client:
        assert read_exactly(client, 8) == b"greeting"
        recorder.pause_after_next_read = True
        upload = os.urandom(200_000)
        client.sendall(upload)
        first = len(recorder.wait_for_bytes(1))
        # Nothing to wait for: paused in mid-stream, the transport must read no further for a while.
        time.sleep(0.1)
        assert len(recorder.data) == first < len(upload)
        with transport.lock:
            transport.resume_reading()
        assert recorder.wait_for_bytes(len(upload)) == upload
        transport.abort()
        assert recorder.lost.wait(STEP)


@bounded(30)
def test_tls_handshake_failure_drops_the_connection(reactor: Reactor, socket_pair: Pair, tls: TLSContexts) -> None:
    ours, peer = socket_pair
    transport, recorder = tls_transport(reactor, ours, tls)
    peer.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP on a TLS port
    assert recorder.lost.wait(STEP)
    assert recorder.data == b"" and transport.closed
    peer.settimeout(STEP)
    try:
        while peer.recv(4096):
            pass  # perhaps an alert, then the end
    except ConnectionResetError:
        pass  # closed with our request unread
