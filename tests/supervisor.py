"""A ``run(workers=N)`` supervisor as a subprocess, for the tests of the workers and of the demo across them.

The command runs in a process group of its own, as a shell starts it; its
log goes to a file that the tests read for the supervisor's lines (the
port from ``listening on HOST:PORT with N workers``, restarts, shutdown).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from waiting import wait_until

__all__ = ["START", "Supervisor", "env", "demo_worker_of"]

ROOT = Path(__file__).resolve().parents[1]
START = 20.0  # seconds for a supervisor and its workers to listen (a loaded 2-core machine)
LISTENING = re.compile(rb"listening on \S+:(\d+) with (\d+) workers")


def env() -> dict[str, str]:
    """This checkout's wsstack importable by the subprocess."""
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


class Supervisor:
    """A supervisor subprocess; its log goes to a file that the tests read."""

    def __init__(self, tmp_path: Path, command: list[str]) -> None:
        self.log_path = tmp_path / "supervisor.log"
        with self.log_path.open("wb") as log:
            # A process group of its own, as a shell gives a command: Ctrl-C signals all of it.
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True
            )
        try:
            wait_until(lambda: LISTENING.search(self.log()) or self.proc.poll() is not None, START, interval=0.05)
        except AssertionError:
            pass  # reported below with the log
        match = LISTENING.search(self.log())
        if match is None:
            self.stop()
            raise AssertionError(f"the supervisor did not start: {self.log().decode(errors='replace')}")
        self.port = int(match[1])
        self.count = int(match[2])

    def log(self) -> bytes:
        return self.log_path.read_bytes()

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def children(self) -> set[int]:
        """The supervisor's child processes now, from /proc (the workers, nothing else)."""
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                status = Path("/proc", entry, "status").read_text()
            except OSError:
                continue
            ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
            state = re.search(r"^State:\s+(\S)", status, re.M)
            if ppid and int(ppid[1]) == self.proc.pid and not (state and state[1] == "Z"):
                found.add(int(entry))
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def demo_worker_of(sup: Supervisor, name: str, timeout: float = 5.0) -> int:
    """The pid of the worker that took member ``name`` of ``python -m wsstack -v demo``, from its DEBUG line."""
    pattern = re.compile(rf"DEBUG: {re.escape(name)} joined worker (\d+) from".encode())
    found = wait_until(lambda: pattern.search(sup.log()), timeout)
    return int(found[1])
