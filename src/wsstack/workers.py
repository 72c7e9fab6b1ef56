"""Several worker processes on one port: the supervisor behind ``Server.run(port, workers=N)``.

One Python process runs on one core. With ``workers=N`` the supervisor
forks N workers, each of which runs the server's ordinary single-process
``run()`` with its own event loop (or its own threads, for ``wsstack.sync``)
on its own listening socket. The sockets share the port through Linux's
``SO_REUSEPORT``: the kernel hashes each new connection's address pair to one
of them, so connections spread over the workers with no process in the
middle. Everything else here is a plain process manager: no event loop, no
thread, nothing but ``fork``, signals and ``waitpid``.

The rules it keeps:

- **Fork before anything runs.** The workers inherit the server object as
  it is (its routes, options and TLS context), so the application needs no
  importable entry point; the supervisor starts no event loop and no thread,
  so a fork never copies a lock held by a thread that is not there.
- **The port stays reserved.** The supervisor binds (without listening) a
  ``SO_REUSEPORT`` socket first, which resolves port 0 to a real one and
  keeps the port while workers come and go; it never accepts connections,
  since the kernel only spreads them over listening sockets.
- **A worker that ends without being asked is restarted**, with a WARNING
  naming its pid and how it ended. That includes a worker that got SIGTERM
  from someone else and shut down gracefully: only the supervisor decides
  when the service stops. A slot restarted ``MAX_RESTARTS`` times within
  ``RESTART_WINDOW`` seconds is failing for good: the supervisor stops the
  others and raises ``WorkerError``.
- **SIGTERM or SIGINT stops everything gracefully.** Each worker gets
  SIGTERM and runs its server's own shutdown (open WebSockets get 1001
  within the server's ``shutdown_timeout``); one still alive
  ``KILL_GRACE`` seconds after that timeout gets SIGKILL. Then ``run()``
  returns normally.

Connections a worker had accepted are lost with it when it dies; the
kernel hands new ones to the workers still listening (and to the restarted
one as soon as it listens).
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["WorkerError", "KILL_GRACE", "MAX_RESTARTS", "RESTART_WINDOW", "check_workers", "supervise"]

logger = logging.getLogger("wsstack")

#: A slot restarted this many times within ``RESTART_WINDOW`` seconds stops the service:
#: a worker that cannot stay up (a port it cannot bind, a crash at start) would otherwise
#: be forked in a tight loop forever.
MAX_RESTARTS = 5
RESTART_WINDOW = 10.0

#: Seconds a worker may take beyond its server's ``shutdown_timeout`` (closing its event
#: loop, flushing its logs) before the supervisor kills it.
KILL_GRACE = 5.0

#: What a worker writes to the supervisor once it listens: its pid, in one write
#: shorter than PIPE_BUF, so writes of several workers never interleave.
_READY = struct.Struct("=i")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SIGNALS = (*_STOP_SIGNALS, signal.SIGCHLD)


class WorkerError(RuntimeError):
    """Workers cannot run here (no ``SO_REUSEPORT``), or one kept dying and the supervisor stopped them all."""


def check_workers(workers: int) -> int:
    """The number of processes to start: ``workers``, or one per CPU for 0.

    Raises ``TypeError``/``ValueError`` for a value that is not a count, and
    ``WorkerError`` where the kernel does not spread connections over
    ``SO_REUSEPORT`` sockets: only Linux does (the BSDs and macOS hand every
    connection to one socket, and Windows has no fork).
    """
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, not {type(workers).__name__}")
    if workers < 0:
        raise ValueError(f"workers must be 0 (one per CPU) or more, not {workers}")
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise WorkerError(f"workers need Linux's SO_REUSEPORT load balancing, which {sys.platform} lacks")
    return workers or os.cpu_count() or 1


def supervise(
    serve: Callable[[int, Callable[[], None]], None],
    port: int,
    host: str | None,
    workers: int,
    *,
    shutdown_timeout: float,
    on_listening: Callable[[int], object] | None = None,
) -> None:
    """Run ``workers`` processes (0: one per CPU) until SIGINT or SIGTERM, as the module docstring says.

    ``serve(port, ready)`` runs in each worker: it listens on ``port`` with
    ``SO_REUSEPORT``, calls ``ready()`` once it does, and returns after its
    graceful shutdown on SIGTERM. ``on_listening(port)`` is called once, in
    the supervisor, when every worker first listens. An ``OSError`` from
    binding the port (in use, no such address) is raised before any worker starts.
    """
    count = check_workers(workers)
    reserved = _reserve(host, port)
    try:
        _Supervisor(serve, reserved, count, shutdown_timeout, on_listening).run()
    finally:
        for sock in reserved:
            sock.close()


def _reserve(host: str | None, port: int) -> list[socket.socket]:
    """Bind a ``SO_REUSEPORT`` socket on every address ``host`` names (as the servers will), without listening."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    reserved: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            reserved.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio binds each family apart
            if port == 0 and len(reserved) > 1:
                address = (address[0], reserved[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except BaseException:
        for sock in reserved:
            sock.close()
        raise
    return reserved


class _Slot:
    """One worker position: the process filling it now and when it was last restarted."""

    __slots__ = ("index", "pid", "ready", "restarts")

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.ready = False
        self.restarts: collections.deque[float] = collections.deque(maxlen=MAX_RESTARTS)


class _Supervisor:
    """The supervisor's state: its slots, and the two pipes it waits on.

    One pipe carries the workers' ready messages, the other the numbers of
    the signals that came (``signal.set_wakeup_fd``): one ``select`` waits
    for both, and for nothing else.
    """

    def __init__(
        self,
        serve: Callable[[int, Callable[[], None]], None],
        reserved: list[socket.socket],
        count: int,
        shutdown_timeout: float,
        on_listening: Callable[[int], object] | None,
    ) -> None:
        self.serve = serve
        self.reserved = reserved
        self.port = int(reserved[0].getsockname()[1])
        self.slots = [_Slot(i) for i in range(count)]
        self.shutdown_timeout = shutdown_timeout
        self.on_listening = on_listening
        self.announced = False
        self.stopping = False
        self.failure: str | None = None
        self.ready_r, self.ready_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.ready_r, self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.ready_r, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def run(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.close()
            raise RuntimeError("run(workers=N) must be called from the main thread (it handles signals)")
        previous = {sig: signal.signal(sig, _note) for sig in _SIGNALS}
        previous_wakeup = signal.set_wakeup_fd(self.wake_w)
        try:
            for slot in self.slots:
                self._start(slot)
            deadline: float | None = None
            while any(slot.pid for slot in self.slots):
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = self.selector.select(timeout)
                if deadline is not None and time.monotonic() >= deadline:
                    self._kill_all(late=True)
                for key, _ in events:
                    if key.fd == self.ready_r:
                        self._read_ready()
                    elif self._read_signals() and not self.stopping:
                        self._stop("signal")
                self._reap()
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + self.shutdown_timeout + KILL_GRACE
        finally:
            self.stopping = True
            self._kill_all(late=False)  # none left, unless something raised
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()
        if self.failure is not None:
            raise WorkerError(self.failure)
        logger.info("all workers stopped")

    def close(self) -> None:
        """Let go of the pipes and the selector (the supervisor at its end, or a worker at its start)."""
        self.selector.close()
        for fd in (self.ready_r, self.ready_w, self.wake_r, self.wake_w):
            os.close(fd)

    def _host(self) -> str:
        host = str(self.reserved[0].getsockname()[0])
        return f"[{host}]" if ":" in host else host

    # -- processes

    def _start(self, slot: _Slot) -> None:
        # Signals stay blocked across fork, so that none reaches the worker before it has
        # let go of the supervisor's handlers and wakeup pipe.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._worker()  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        slot.pid, slot.ready = pid, False
        logger.debug("worker %d started: pid %d", slot.index, pid)

    def _worker(self) -> None:
        """The child's side of the fork: serve, then exit without running the parent's cleanup."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            ready_w = os.dup(self.ready_w)
            self.close()
            for sock in self.reserved:
                sock.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, set())

            def ready() -> None:
                os.write(ready_w, _READY.pack(os.getpid()))

            self.serve(self.port, ready)
            status = 0
        except BaseException:
            logger.exception("worker pid %d failed", os.getpid())
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(status)

    def _read_ready(self) -> None:
        try:
            data = os.read(self.ready_r, _READY.size * 64)
        except BlockingIOError:
            return
        for (pid,) in _READY.iter_unpack(data):
            for slot in self.slots:
                if slot.pid == pid:
                    slot.ready = True
                    logger.debug("worker %d listening: pid %d", slot.index, pid)
        if not self.announced and not self.stopping and all(slot.ready for slot in self.slots):
            self.announced = True
            logger.info("listening on %s:%d with %d workers", self._host(), self.port, len(self.slots))
            if self.on_listening is not None:
                self.on_listening(self.port)

    def _read_signals(self) -> bool:
        """Drain the wakeup pipe; whether a stop signal came (SIGCHLD is handled by reaping every time)."""
        stop = False
        while True:
            try:
                data = os.read(self.wake_r, 512)
            except BlockingIOError:
                return stop
            if not data:
                return stop
            stop = stop or any(number in _STOP_SIGNALS for number in data)

    def _reap(self) -> None:
        for slot in self.slots:
            if not slot.pid:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = slot.pid, 0
            if pid == 0:
                continue
            slot.pid, slot.ready = 0, False
            if self.stopping:
                logger.debug("worker %d stopped: pid %d, %s", slot.index, pid, _describe(status))
                continue
            now = time.monotonic()
            if len(slot.restarts) == MAX_RESTARTS and now - slot.restarts[0] < RESTART_WINDOW:
                self.failure = (
                    f"worker {slot.index} (pid {pid}) {_describe(status)}, its {MAX_RESTARTS + 1}th end "
                    f"within {RESTART_WINDOW:g} s: stopping all workers"
                )
                logger.error("%s", self.failure)
                self._stop("failure")
                continue
            slot.restarts.append(now)
            logger.warning("worker %d (pid %d) %s; restarting it", slot.index, pid, _describe(status))
            self._start(slot)

    def _stop(self, why: str) -> None:
        self.stopping = True
        logger.info("stopping %d workers (%s)", sum(1 for slot in self.slots if slot.pid), why)
        self._signal_all(signal.SIGTERM)

    def _kill_all(self, late: bool) -> None:
        alive = [slot for slot in self.slots if slot.pid]
        for slot in alive if late else ():
            logger.warning(
                "worker %d (pid %d) still running after the shutdown timeout: killing it", slot.index, slot.pid
            )
        self._signal_all(signal.SIGKILL)
        for slot in alive:
            try:
                os.waitpid(slot.pid, 0)
            except ChildProcessError:
                pass
            slot.pid = 0

    def _signal_all(self, sig: signal.Signals) -> None:
        for slot in self.slots:
            if slot.pid:
                try:
                    os.kill(slot.pid, sig)
                except ProcessLookupError:
                    pass  # exited already; the next reap collects it


def _note(signum: int, frame: object) -> None:
    """A Python-level handler that does nothing: the signal's number reaches the supervisor through the wakeup pipe."""


def _describe(status: int) -> str:
    """How a worker ended, from ``waitpid``'s status: ``exited with status 1`` or ``was killed by SIGKILL``."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"
