"""The reactor on its own: calls from other threads, timers, linger ticks, readiness callbacks, stop().

Every test runs on both pollers (the ``reactor`` fixture): epoll, whose
interest list other threads may change, and the ``selectors`` fallback.
What only the I/O thread may call (``call_later``, ``register``) is sent
there with ``call_soon``, as the transports do.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable

import pytest

from sync_helpers import STEP, on_io_thread
from waiting import bounded, wait_until
from wsstack.sync import reactor as reactor_module
from wsstack.sync.reactor import IN, OUT, Reactor, Timer


class Watcher:
    """A ``Pollable`` that notes each callback with the thread it ran on, and never lets the loop spin."""

    def __init__(self, reactor: Reactor, sock: socket.socket, fail_reads: bool = False) -> None:
        self.reactor = reactor
        self.sock = sock
        self.fail_reads = fail_reads
        self.data = bytearray()
        self.threads: set[int] = set()
        self.eof = threading.Event()
        self.readable = threading.Event()
        self.writable = threading.Event()
        self.aborted = threading.Event()

    def read_ready(self) -> None:
        self.threads.add(threading.get_ident())
        if self.fail_reads:
            raise RuntimeError("a broken protocol")
        chunk = self.sock.recv(65536)
        self.data += chunk
        self.readable.set()
        if not chunk:
            self.eof.set()
            self.reactor.unregister(self.sock)

    def write_ready(self) -> None:
        self.threads.add(threading.get_ident())
        self.writable.set()
        self.reactor.set_events(self.sock.fileno(), IN)

    def abort(self) -> None:
        self.threads.add(threading.get_ident())
        self.aborted.set()
        self.reactor.unregister(self.sock)


def io_ident(reactor: Reactor) -> int:
    return on_io_thread(reactor, threading.get_ident)


# -- call_soon


@bounded(30)
def test_call_soon_from_another_thread_runs_on_the_io_thread(reactor: Reactor) -> None:
    seen: list[tuple[int, bool]] = []
    done = threading.Event()
    reactor.call_soon(lambda: seen.append((threading.get_ident(), reactor.in_thread)))
    reactor.call_soon(done.set)
    assert done.wait(STEP)
    assert seen == [(io_ident(reactor), True)]
    assert not reactor.in_thread and reactor.alive


@bounded(30)
def test_call_soon_from_many_threads_runs_every_call_in_each_threads_order(reactor: Reactor) -> None:
    threads_count, per_thread = 8, 2000
    calls: list[tuple[int, int]] = []  # appended on the I/O thread only
    start = threading.Barrier(threads_count, timeout=STEP)

    def caller(tid: int) -> None:
        start.wait()
        for seq in range(per_thread):
            reactor.call_soon(calls.append, (tid, seq))

    threads = [threading.Thread(target=caller, args=(tid,)) for tid in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STEP)
    wait_until(lambda: len(calls) == threads_count * per_thread, STEP)
    for tid in range(threads_count):
        assert [seq for t, seq in calls if t == tid] == list(range(per_thread))


@bounded(30)
def test_a_call_queued_by_a_call_waits_for_the_next_turn(reactor: Reactor) -> None:
    order: list[str] = []
    done = threading.Event()

    def first() -> None:
        order.append("first")
        reactor.call_soon(lambda: order.append("queued by first"))
        reactor.call_soon(done.set)

    def batch() -> None:
        # Queued from the I/O thread, both land in the same turn.
        reactor.call_soon(first)
        reactor.call_soon(lambda: order.append("second"))

    reactor.call_soon(batch)
    assert done.wait(STEP)
    assert order == ["first", "second", "queued by first"]


@bounded(30)
def test_a_failing_call_is_logged_and_the_loop_goes_on(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("broken callback")

    with caplog.at_level(logging.ERROR, logger="wsstack"):
        reactor.call_soon(broken)
        reactor.call_soon(done.set)
        assert done.wait(STEP)
    assert any("error in a callback" in r.getMessage() and r.exc_info for r in caplog.records)
    assert reactor.alive


# -- timers


@bounded(30)
def test_timers_run_in_deadline_order_and_never_early(reactor: Reactor) -> None:
    ran: list[tuple[str, float, float]] = []
    done = threading.Event()
    timers: dict[str, Timer] = {}

    def note(name: str) -> None:
        ran.append((name, time.monotonic(), timers[name].when))

    def schedule() -> None:
        for name, delay in [("c", 0.15), ("a", 0.05), ("d", 0.2), ("now", 0.0), ("b", 0.1)]:
            timers[name] = reactor.call_later(delay, note, name)
        reactor.call_later(0.25, done.set)

    reactor.call_soon(schedule)
    assert done.wait(STEP)
    assert [name for name, _, _ in ran] == ["now", "a", "b", "c", "d"]
    assert all(at >= when for _, at, when in ran)


@bounded(30)
def test_a_cancelled_timer_never_runs(reactor: Reactor) -> None:
    ran: list[str] = []
    done = threading.Event()

    def schedule() -> None:
        dropped = reactor.call_later(0.02, ran.append, "cancelled")
        reactor.call_later(0.01, ran.append, "kept")
        reactor.call_later(0.05, done.set)
        dropped.cancel()
        dropped.cancel()  # twice is harmless

    reactor.call_soon(schedule)
    assert done.wait(STEP)
    assert ran == ["kept"]


@bounded(30)
def test_a_timer_cancelled_by_an_earlier_timer_never_runs(reactor: Reactor) -> None:
    ran: list[str] = []
    done = threading.Event()

    def schedule() -> None:
        later = reactor.call_later(0.06, ran.append, "cancelled")
        reactor.call_later(0.03, later.cancel)
        reactor.call_later(0.1, done.set)

    reactor.call_soon(schedule)
    assert done.wait(STEP)
    assert ran == []


@bounded(30)
def test_many_cancelled_timers_leave_the_others_in_order(reactor: Reactor) -> None:
    """Enough cancellations to make the reactor compact its heap: what is left still runs, in order."""
    ran: list[int] = []
    done = threading.Event()
    rng = random.Random(3)
    order = rng.sample(range(200), 200)  # pushed out of deadline order, so the heap is no sorted list
    kept = set(rng.sample(range(200), 40))

    deadlines: dict[int, float] = {}

    def schedule() -> None:
        timers = {i: reactor.call_later(0.02 + i * 0.001, ran.append, i) for i in order}
        for i, timer in timers.items():
            deadlines[i] = timer.when
            if i not in kept:
                timer.cancel()
        reactor.call_later(0.5, done.set)

    reactor.call_soon(schedule)
    assert done.wait(STEP)
    assert ran == sorted(kept, key=deadlines.__getitem__)


@bounded(30)
def test_timers_scheduled_from_other_threads_through_call_soon(reactor: Reactor) -> None:
    """``call_later`` belongs to the I/O thread; other threads reach it through ``call_soon``, even while it idles."""
    fired: list[tuple[int, float, float]] = []  # (thread, late by, delay)
    done = threading.Semaphore(0)
    io = io_ident(reactor)

    def note(asked: float, delay: float) -> None:
        fired.append((threading.get_ident(), time.monotonic() - (asked + delay), delay))
        done.release()

    def scheduler(delay: float) -> None:
        reactor.call_soon(reactor.call_later, delay, note, time.monotonic(), delay)

    threads = [threading.Thread(target=scheduler, args=(0.02 * n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STEP)
    for _ in threads:
        assert done.acquire(timeout=STEP)
    assert {ident for ident, _, _ in fired} == {io}
    assert all(0 <= late < 1 for _, late, _ in fired), fired


@bounded(30)
def test_a_failing_timer_is_logged_and_later_timers_still_run(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("broken timer")

    with caplog.at_level(logging.ERROR, logger="wsstack"):
        reactor.call_soon(reactor.call_later, 0.01, broken)
        reactor.call_soon(reactor.call_later, 0.02, done.set)
        assert done.wait(STEP)
    assert any("error in a timer" in r.getMessage() for r in caplog.records)


class Hog:
    """A target whose one turn holds the I/O thread for ``seconds``, after ``meanwhile``: a long pass over busy sockets."""

    def __init__(self, reactor: Reactor, sock: socket.socket, seconds: float, meanwhile: Callable[[], object]) -> None:
        self.reactor = reactor
        self.sock = sock
        self.seconds = seconds
        self.meanwhile = meanwhile

    def read_ready(self) -> None:
        self.reactor.unregister(self.sock)
        self.meanwhile()
        time.sleep(self.seconds)

    def write_ready(self) -> None:
        pass

    def abort(self) -> None:
        pass


@bounded(30)
def test_a_timer_that_falls_due_during_a_long_pass_runs_after_what_arrived_meanwhile(
    reactor: Reactor, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    """A timer judges what came in before its deadline (the server's open timeout, a pong): that is read first."""
    ours, peer = socket_pair
    ours.setblocking(False)
    watcher = Watcher(reactor, ours)
    seen_by_timer: list[bytes] = []
    hog_sock, trigger = socket.socketpair()
    with hog_sock, trigger:
        trigger.send(b"!")  # the hog is ready at the first poll, well before the timer's deadline
        hog = Hog(reactor, hog_sock, 0.6, lambda: peer.sendall(b"in time"))

        def schedule() -> None:
            reactor.register(ours, IN, watcher)
            reactor.register(hog_sock, IN, hog)
            reactor.call_later(0.2, lambda: seen_by_timer.append(bytes(watcher.data)))

        reactor.call_soon(schedule)
        wait_until(lambda: seen_by_timer, STEP)
    assert seen_by_timer == [b"in time"]
    on_io_thread(reactor, reactor.unregister, ours)


# -- linger ticks


class Lingerer:
    """Asks to be ticked ``wanted`` times, noting each tick's number and time."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.ticks: list[tuple[int, float]] = []
        self.done = threading.Event()

    def linger_tick(self, ticks: int) -> bool:
        self.ticks.append((ticks, time.monotonic()))
        if len(self.ticks) < self.wanted:
            return True
        self.done.set()
        return False


@bounded(30)
def test_linger_ticks_until_the_target_says_enough_and_arms_again(reactor: Reactor) -> None:
    first = Lingerer(3)
    started = time.monotonic()
    reactor.linger(first)
    assert first.done.wait(STEP)
    numbers = [n for n, _ in first.ticks]
    assert numbers == list(range(numbers[0], numbers[0] + 3))  # one call per tick
    assert first.ticks[0][1] - started >= reactor_module.LINGER * 0.9
    # The queue emptied and ticking stopped; a new target starts it again.
    second = Lingerer(1)
    reactor.linger(second)
    assert second.done.wait(STEP)
    assert second.ticks[0][0] > numbers[-1]
    assert len(first.ticks) == 3


# -- readiness


@bounded(30)
def test_read_ready_on_data_and_at_the_end_of_the_stream(
    reactor: Reactor, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = socket_pair
    ours.setblocking(False)
    watcher = Watcher(reactor, ours)
    on_io_thread(reactor, reactor.register, ours, IN, watcher)
    peer.sendall(b"ping")
    wait_until(lambda: bytes(watcher.data) == b"ping", STEP)
    peer.close()
    assert watcher.eof.wait(STEP)
    assert watcher.threads == {io_ident(reactor)}
    assert not watcher.writable.is_set() and not watcher.aborted.is_set()


@bounded(30)
def test_write_ready_when_watched_for_output(
    reactor: Reactor, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, _ = socket_pair
    ours.setblocking(False)
    watcher = Watcher(reactor, ours)
    on_io_thread(reactor, reactor.register, ours, IN | OUT, watcher)
    assert watcher.writable.wait(STEP)
    assert not watcher.readable.is_set()
    on_io_thread(reactor, reactor.unregister, ours)


@bounded(30)
def test_a_failing_read_ready_aborts_that_target(
    reactor: Reactor, socket_pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    ours, peer = socket_pair
    ours.setblocking(False)
    watcher = Watcher(reactor, ours, fail_reads=True)
    with caplog.at_level(logging.ERROR, logger="wsstack"):
        on_io_thread(reactor, reactor.register, ours, IN, watcher)
        peer.sendall(b"x")
        assert watcher.aborted.wait(STEP)
    assert any("dropping the connection" in r.getMessage() for r in caplog.records)
    assert on_io_thread(reactor, lambda: "still running") == "still running"


@bounded(30)
def test_interest_changes_from_another_thread(
    reactor: Reactor, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    """On epoll ``set_events`` works from any thread without waking the loop; elsewhere it goes through call_soon."""
    ours, peer = socket_pair
    ours.setblocking(False)
    watcher = Watcher(reactor, ours)
    on_io_thread(reactor, reactor.register, ours, 0, watcher)
    peer.sendall(b"waiting")
    # Nothing to wait for: watched for nothing, the data must stay unread for a while.
    time.sleep(0.1)
    assert not watcher.readable.is_set()
    if reactor.threadsafe:
        reactor.set_events(ours.fileno(), IN)
    else:
        reactor.call_soon(reactor.set_events, ours.fileno(), IN)
    wait_until(lambda: bytes(watcher.data) == b"waiting", STEP)
    on_io_thread(reactor, reactor.unregister, ours)


# -- stop


@bounded(30)
def test_stop_runs_what_was_queued_before_it_and_ends_the_thread(reactor: Reactor) -> None:
    ran: list[int] = []
    for i in range(100):
        reactor.call_soon(ran.append, i)
    reactor.call_soon(reactor.call_later, 60, ran.append, -1)  # far away: dropped, not waited for
    started = time.monotonic()
    reactor.stop(STEP)
    assert time.monotonic() - started < 2
    assert ran == list(range(100))
    assert not reactor.alive
    assert not any(thread.name == reactor.name for thread in threading.enumerate())
    reactor.call_soon(ran.append, 100)  # after the end: dropped, without an error
    reactor.stop(STEP)  # twice is harmless
    assert ran == list(range(100))


@bounded(30)
def test_stop_from_the_io_thread_does_not_wait_for_itself(reactor: Reactor) -> None:
    after: list[str] = []

    def stop_here() -> None:
        reactor.stop(STEP)  # would deadlock if it joined its own thread
        after.append("returned")

    reactor.call_soon(stop_here)
    wait_until(lambda: not any(thread.name == reactor.name for thread in threading.enumerate()), STEP)
    assert after == ["returned"] and not reactor.alive
