"""A real redis-server for the hub's tests: on a free loopback port, no persistence, stopped after.

``scripts/install-redis`` installs Debian's package; when the binary is
missing the tests fail (``pytest.fail``), never skip, so CI cannot go green
without them. ``kill()`` and ``restart()`` take Redis away and bring it back
on the same port, for the fault tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
import redis

__all__ = ["RedisServer", "redis_binary"]


def redis_binary() -> str:
    path = os.environ.get("WSSTACK_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(path):
        pytest.fail("redis-server is missing: run scripts/install-redis (or set WSSTACK_REDIS_SERVER to its path)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server child process."""

    def __init__(self) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would; the port is free again when this returns."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        """A blocking redis-py client, for the tests' own commands (CLIENT LIST, CLIENT KILL, XLEN)."""
        return redis.Redis.from_url(self.url, socket_timeout=5)
