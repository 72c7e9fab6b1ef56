"""``Server.run(port, workers=N)`` and ``--workers N``: real supervisors, real worker processes, loopback clients.

Each test starts ``app.py`` (or ``python -m wsstack``) as a fresh process,
so the supervisor forks from a process with no event loop and no thread,
as a user's script would. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from supervisor import Supervisor, env
from waiting import bounded, wait_until
from wsstack.asyncio import Server
from wsstack.workers import KILL_GRACE, MAX_RESTARTS, WorkerError, check_workers

APP = Path(__file__).with_name("app.py")


@pytest.fixture
def supervisor(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Supervisor]:
    args = getattr(request, "param", [])
    sup = Supervisor(tmp_path, [sys.executable, str(APP), *args])
    yield sup
    sup.stop()


def pid_of_one_connection(url: str) -> int:
    with connect(url, open_timeout=5) as ws:
        return int(ws.recv(timeout=5))


def pids_over(url: str, connections: int = 40) -> set[int]:
    return {pid_of_one_connection(url) for _ in range(connections)}


@pytest.mark.parametrize("supervisor", [[], ["--sync"]], indirect=True, ids=["asyncio", "sync"])
@bounded(60)
def test_two_workers_serve_one_port(supervisor: Supervisor) -> None:
    # SO_REUSEPORT picks a socket by a hash of the address pair: over 40 client ports both get some.
    workers = supervisor.children()
    assert len(workers) == 2
    assert pids_over(supervisor.url()) == workers
    with connect(supervisor.url(), open_timeout=5) as ws:
        ws.recv(timeout=5)
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"


@bounded(60)
def test_a_killed_worker_is_restarted_and_serves(supervisor: Supervisor) -> None:
    before = supervisor.children()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    restart = re.compile(rf"WARNING worker \d \(pid {victim}\) was killed by SIGKILL; restarting it".encode())
    wait_until(lambda: restart.search(supervisor.log()), 10)
    wait_until(lambda: len(supervisor.children() - {victim}) == 2, 10)
    after = supervisor.children()
    assert victim not in after and len(after & before) == 1
    (newcomer,) = after - before

    def newcomer_serves() -> bool:
        return newcomer in pids_over(supervisor.url(), 10)

    wait_until(newcomer_serves, 20, interval=0.1)
    assert pids_over(supervisor.url()) == after


@bounded(60)
def test_a_worker_stopped_by_someone_else_is_restarted(supervisor: Supervisor) -> None:
    # Only the supervisor decides when the service ends: a graceful exit it did not ask for is a death too.
    victim = min(supervisor.children())
    os.kill(victim, signal.SIGTERM)
    wait_until(lambda: f"(pid {victim}) exited with status 0; restarting it".encode() in supervisor.log(), 10)
    wait_until(lambda: len(supervisor.children() - {victim}) == 2, 10)


@pytest.mark.parametrize("supervisor", [[], ["--sync"]], indirect=True, ids=["asyncio", "sync"])
@bounded(60)
def test_sigterm_closes_every_websocket_with_1001(supervisor: Supervisor) -> None:
    with contextlib.ExitStack() as stack:
        clients: list[ClientConnection] = []
        for _ in range(10):
            ws = stack.enter_context(connect(supervisor.url(), open_timeout=5))
            clients.append(ws)
            ws.recv(timeout=5)
        supervisor.proc.send_signal(signal.SIGTERM)
        codes = []
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None
            codes.append(closed.value.rcvd.code)
        assert codes == [1001] * 10
        assert supervisor.proc.wait(15) == 0
    assert b"all workers stopped" in supervisor.log()
    assert supervisor.children() == set()


@pytest.mark.parametrize("supervisor", [["--workers", "1", "--stuck"]], indirect=True)
@bounded(60)
def test_a_worker_stuck_past_the_shutdown_timeout_is_killed(supervisor: Supervisor) -> None:
    with socket.create_connection(("127.0.0.1", supervisor.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # the handler blocks the worker's loop
        wait_until(lambda: b"WARNING handler stuck" in supervisor.log(), 10)
        started = time.monotonic()
        supervisor.proc.send_signal(signal.SIGTERM)
        assert supervisor.proc.wait(30) == 0
    waited = time.monotonic() - started
    # shutdown_timeout (3 s in app.py) and KILL_GRACE, then SIGKILL.
    assert 3 + KILL_GRACE - 1 < waited < 3 + KILL_GRACE + 10
    assert b"still running after the shutdown timeout: killing it" in supervisor.log()
    assert supervisor.children() == set()


@pytest.mark.parametrize("supervisor", [["--workers", "0"]], indirect=True)
@bounded(60)
def test_zero_workers_means_one_per_cpu(supervisor: Supervisor) -> None:
    assert supervisor.count == os.cpu_count()
    assert len(supervisor.children()) == os.cpu_count()


@pytest.mark.parametrize("supervisor", [["--workers", "1", "--die"]], indirect=True)
@bounded(90)
def test_a_worker_that_keeps_dying_stops_the_supervisor(supervisor: Supervisor) -> None:
    deaths = re.compile(rb"exited with status 3; restarting it")
    for death in range(1, MAX_RESTARTS + 2):
        if supervisor.proc.poll() is not None:
            break

        def died(death: int = death) -> bool:
            try:
                pid_of_one_connection(supervisor.url())
            except (OSError, WebSocketException):
                pass  # the worker dies on the request, or is not back yet
            return len(deaths.findall(supervisor.log())) >= death or supervisor.proc.poll() is not None

        wait_until(died, 15, interval=0.1)
    assert supervisor.proc.wait(15) == 1
    log = supervisor.log()
    assert len(deaths.findall(log)) == MAX_RESTARTS
    assert b"within 10 s: stopping all workers" in log
    assert supervisor.children() == set()


def test_check_workers() -> None:
    assert check_workers(3) == 3
    assert check_workers(0) == os.cpu_count()
    with pytest.raises(ValueError, match="workers must be 0"):
        check_workers(-1)
    with pytest.raises(TypeError, match="workers must be an int"):
        check_workers(True)
    assert issubclass(WorkerError, RuntimeError)


def test_workers_need_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(WorkerError, match="SO_REUSEPORT"):
        check_workers(2)


@bounded(30)
def test_workers_need_the_main_thread() -> None:
    # The supervisor handles signals, which Python delivers to the main thread only.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Server().run(0, workers=1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError) and "main thread" in str(errors[0])


@pytest.mark.parametrize("command", [["echo"], ["echo", "--sync"], ["demo"]])
@bounded(60)
def test_cli_workers(tmp_path: Path, command: list[str]) -> None:
    cli = [sys.executable, "-m", "wsstack", *command, "--workers", "2", "--port", "0"]
    sup = Supervisor(tmp_path, cli)
    try:
        assert sup.count == 2 and len(sup.children()) == 2
        if command[0] == "echo":
            with connect(sup.url(), open_timeout=5) as ws:
                ws.send("over two workers")
                assert ws.recv(timeout=5) == "over two workers"
        else:
            # Logged by on_listening, right after the supervisor's "listening on".
            wait_until(lambda: f"open http://127.0.0.1:{sup.port}/".encode() in sup.log(), 5)
        sup.proc.send_signal(signal.SIGINT)  # to the supervisor alone
        assert sup.proc.wait(15) == 0
        assert sup.children() == set()
    finally:
        sup.stop()


@bounded(60)
def test_cli_workers_ctrl_c(tmp_path: Path) -> None:
    # A terminal's Ctrl-C sends SIGINT to every process of the group: workers stopping on their
    # own at the same time as the supervisor are not restarted.
    sup = Supervisor(tmp_path, [sys.executable, "-m", "wsstack", "echo", "--workers", "2", "--port", "0"])
    try:
        with connect(sup.url(), open_timeout=5) as ws:
            os.killpg(sup.proc.pid, signal.SIGINT)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert sup.proc.wait(15) == 0
        assert b"restarting" not in sup.log()
    finally:
        sup.stop()


@pytest.mark.parametrize(("value", "why"), [("-1", "use 0 (one per CPU) or more"), ("two", "not a number of workers")])
def test_cli_workers_usage_error(value: str, why: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wsstack", "echo", "--workers", value], capture_output=True, env=env(), timeout=30
    )
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0] and why in lines[0], lines
