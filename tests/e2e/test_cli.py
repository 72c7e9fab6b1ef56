"""``python -m wsstack``: the echo server, the interactive client and the chat demo, run as a user runs them.

The servers are subprocesses started with ``--port 0``; the port they bound
is read from their "listening on" log line, which avoids guessing a free
port that someone else could take first.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.sync.client import connect as ws_connect

from sync_helpers import STEP, raw_http
from waiting import bounded, wait_until
from wsstack import Options
from wsstack.asyncio import Context, Server, connect
from wsstack.cli.client import format_message
from wsstack.cli.demo import clean_name
from wsstack.sync import connect as sync_connect

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
LISTENING = re.compile(rb"listening on \S+:(\d+)")
BIG = 4 << 20

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def cli_env() -> dict[str, str]:
    """wsstack importable by the subprocess even without an installed copy; pipes in UTF-8."""
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), "PYTHONIOENCODING": "utf-8"}


def wsstack_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsstack", *args]


class CLIServer:
    """A ``python -m wsstack`` server subprocess; its log goes to a file read for the port."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log_path = tmp_path / "server.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            wsstack_command(*args, "--port", "0"), stdout=self.log, stderr=subprocess.STDOUT, env=cli_env()
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        def listening_or_gone() -> bool:
            return bool(LISTENING.search(self.log_path.read_bytes())) or self.proc.poll() is not None

        try:
            wait_until(listening_or_gone, 15, interval=0.05)
        except AssertionError:
            pass  # reported below, with what the server wrote
        match = LISTENING.search(self.log_path.read_bytes())
        if match is None:
            raise AssertionError(f"the server did not start: {self.output()}")
        return int(match.group(1))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLIServer]:
    server = CLIServer(tmp_path_factory.mktemp("echo"), "echo")
    yield server
    assert server.stop() == 0, server.output()
    assert "Traceback" not in server.output()


@pytest.fixture(scope="module")
def compressing_echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLIServer]:
    server = CLIServer(tmp_path_factory.mktemp("echo-deflate"), "echo", "--compression")
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLIServer]:
    server = CLIServer(tmp_path_factory.mktemp("demo"), "demo")
    yield server
    assert server.stop() == 0, server.output()


# ------------------------------------------------------------------- --help


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["demo", "echo", "client"]),
        (("demo",), ["--host", "--port", "--workers", "--redis", "--hub", "--history", "newcomers"]),
        (("echo",), ["--host", "--port", "--compression"]),
        (("client",), ["url", "--compression", "--subprotocol", "--linger"]),
    ],
)
def test_help(args: tuple[str, ...], expected: list[str]) -> None:
    result = subprocess.run(
        wsstack_command(*args, "--help"), check=False, capture_output=True, text=True, timeout=30, env=cli_env()
    )
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout


def test_a_command_is_required() -> None:
    result = subprocess.run(wsstack_command(), check=False, capture_output=True, text=True, timeout=30, env=cli_env())
    assert result.returncode == 2
    assert "required" in result.stderr
    assert len(result.stderr.splitlines()) == 1


# ------------------------------------------------------------------- errors


def one_line_error(*args: str) -> tuple[int, str]:
    """Run a command expected to fail; its exit status and its one line of stderr."""
    result = subprocess.run(
        wsstack_command(*args),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("client", "http://127.0.0.1:1/"), "not a WebSocket URL"),
        (("client", "127.0.0.1:1"), "not a WebSocket URL"),
        (("client", "--linger", "-1", "ws://127.0.0.1:1/"), "--linger"),
        (("client", "--linger", "soon", "ws://127.0.0.1:1/"), "not a number of seconds"),
        (("echo", "--port", "99999"), "port 99999 is not in 0-65535"),
        (("echo", "--port", "-5"), "port -5 is not in 0-65535"),
        (("echo", "--sync", "--port", "65536"), "port 65536"),
        (("demo", "--port", "99999"), "port 99999"),
        (("demo", "--redis", "http://127.0.0.1:6379/"), "not a Redis URL"),
        (("demo", "--hub", "pubsub"), "--hub needs --redis"),
        (("demo", "--hub", "kafka", "--redis", "redis://127.0.0.1:1/0"), "invalid choice"),
        (("demo", "--history", "-3"), "use 0 or more"),
        (("echo", "--port", "http"), "not a port number"),
    ],
)
def test_a_usage_error_is_one_line_and_status_2(args: tuple[str, ...], words: str) -> None:
    status, line = one_line_error(*args)
    assert status == 2
    assert words in line and line.startswith("python -m wsstack ")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port bound (and not listening) for the test's duration: nobody can listen on it, nor connect."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_connection_refused_is_one_line_and_status_1(taken_port: int) -> None:
    status, line = one_line_error("client", f"ws://127.0.0.1:{taken_port}/")
    assert status == 1
    assert "cannot connect" in line


@pytest.mark.parametrize("command", [("echo",), ("echo", "--sync"), ("demo",)], ids=["echo", "echo-sync", "demo"])
def test_a_port_in_use_is_one_line_and_status_1(command: tuple[str, ...], taken_port: int) -> None:
    status, line = one_line_error(*command, "--port", str(taken_port))
    assert status == 1
    assert f"cannot listen on 127.0.0.1:{taken_port}: Address already in use" in line


# --------------------------------------------------------------------- echo


def test_echo_text_and_binary_on_any_path(echo_server: CLIServer) -> None:
    async def scenario() -> None:
        for path in ("/", "/ws", "/some/deep/path?with=query"):
            async with connect(f"ws://127.0.0.1:{echo_server.port}{path}") as ws:
                await ws.send("text stays text")
                assert await ws.recv() == "text stays text"
                await ws.send(b"\x00binary stays binary\xff")
                assert await ws.recv() == b"\x00binary stays binary\xff"

    run(scenario())


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
def test_echo_a_4_mib_message(compression: bool, echo_server: CLIServer, compressing_echo_server: CLIServer) -> None:
    server = compressing_echo_server if compression else echo_server
    text = "".join(chr(0x20 + i % 95) for i in range(BIG))
    data = os.urandom(BIG)

    async def scenario() -> None:
        options = Options(enable_compression=compression, max_message_size=2 * BIG)
        async with connect(f"ws://127.0.0.1:{server.port}/big", options=options) as ws:
            assert ws.extensions == (["permessage-deflate"] if compression else [])
            await ws.send(text)
            assert await ws.recv() == text
            await ws.send(data)
            assert await ws.recv() == data

    run(scenario())


def test_echo_accepts_many_fragments(echo_server: CLIServer) -> None:
    """More fragments than the default max_fragments (4096) allows: the echo server lifts the limit."""

    async def scenario() -> None:
        async with websockets_connect(f"ws://127.0.0.1:{echo_server.port}/", proxy=None) as peer:
            await peer.send(["ab"] * 5000)
            assert await peer.recv() == "ab" * 5000

    run(scenario())


@bounded(40)
def test_cli_echo_sync_round_trip(tmp_path: Path) -> None:
    server = CLIServer(tmp_path, "echo", "--sync")
    try:
        port = server.port
        big = os.urandom(4 << 20)
        with sync_connect(f"ws://127.0.0.1:{port}/any/path", options=Options(max_message_size=8 << 20)) as ws:
            ws.send("text stays text")
            assert ws.recv(timeout=STEP) == "text stays text"
            ws.send(big)
            assert ws.recv(timeout=STEP) == big
        with ws_connect(f"ws://127.0.0.1:{port}/") as client:
            client.send(["ab"] * 5000)  # more fragments than the default limit
            assert client.recv(timeout=STEP) == "ab" * 5000
        assert raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 426")
    finally:
        status = server.stop()  # Ctrl-C
    assert status == 0, server.output()
    assert "Traceback" not in server.output()


def http_error(url: str) -> urllib.error.HTTPError:
    """The error answer to a GET, its connection already closed."""
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(url, timeout=10)
    answer.value.close()
    return answer.value


def test_echo_answers_plain_http_with_426(echo_server: CLIServer) -> None:
    error = http_error(f"http://127.0.0.1:{echo_server.port}/")
    assert error.code == 426
    assert error.headers["Upgrade"] == "websocket"


# ------------------------------------------------------------------- client


@asynccontextmanager
async def client_process(url: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *wsstack_command("client", url, *args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()


def test_client_through_a_pipe(compressing_echo_server: CLIServer) -> None:
    async def scenario() -> None:
        url = f"ws://127.0.0.1:{compressing_echo_server.port}/chat"
        async with client_process(url, "--compression") as proc:
            assert proc.stdin is not None and proc.stderr is not None
            for line in ("hello", "second line", "ünïcödé ✓"):
                proc.stdin.write(f"{line}\n".encode())
                await proc.stdin.drain()
                assert await read_line(proc) == f"< {line}\n"
            proc.stdin.close()  # end of input: close with 1000
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            log = (await proc.stderr.read()).decode()
            assert "extensions: permessage-deflate" in log
            assert "connection closed: 1000" in log

    run(scenario())


async def serve_once(handler: Any) -> Server:
    """An in-process server whose /ws route accepts the first subprotocol offered and runs ``handler(ws)``."""
    srv = Server()

    @srv.get("/ws")
    async def route(ctx: Context) -> None:
        offered = ctx.offered_subprotocols()
        await handler(await ctx.upgrade_to_websocket(subprotocol=offered[0] if offered else None))

    await srv.listen(0)
    return srv


def test_client_exits_when_the_server_closes_first() -> None:
    """Input is still open, but the server says goodbye: the client prints it all and exits 0."""

    async def goodbye(ws: Any) -> None:
        await ws.send("welcome")
        await ws.send(b"\x01\x02\x03")
        await ws.close(1000, "bye")

    async def scenario() -> None:
        srv = await serve_once(goodbye)
        try:
            async with client_process(f"ws://127.0.0.1:{srv.port}/ws", "-s", "chat") as proc:
                assert await read_line(proc) == "< welcome\n"
                assert await read_line(proc) == "< [3 bytes] 010203\n"
                assert await asyncio.wait_for(proc.wait(), 10) == 0
                assert proc.stderr is not None
                log = (await proc.stderr.read()).decode()
                assert "subprotocol: chat" in log
                assert "connection closed: 1000 bye" in log
        finally:
            await srv.close()

    run(scenario())


def test_client_reports_an_abnormal_close() -> None:
    async def fail(ws: Any) -> None:
        await ws.close(1011, "server trouble")

    async def scenario() -> None:
        srv = await serve_once(fail)
        try:
            async with client_process(f"ws://127.0.0.1:{srv.port}/ws") as proc:
                assert await asyncio.wait_for(proc.wait(), 10) == 1
        finally:
            await srv.close()

    run(scenario())


def test_client_cannot_connect() -> None:
    async def scenario() -> None:
        srv = Server()
        await srv.listen(0)
        port = srv.port
        await srv.close()  # nothing listens there any more
        async with client_process(f"ws://127.0.0.1:{port}/") as proc:
            assert await asyncio.wait_for(proc.wait(), 10) == 1
            assert proc.stderr is not None
            assert "cannot connect" in (await proc.stderr.read()).decode()

    run(scenario())


def readme_pipe_example() -> str:
    """The README's ``printf ... | python -m wsstack client`` command, as written there."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("printf") and "python -m wsstack client" in line:
            return line
    raise AssertionError("the README has no printf | python -m wsstack client example")


@bounded(120)
def test_the_readme_pipe_example_prints_the_echo_every_time(echo_server: CLIServer) -> None:
    """Issue #12: the client used to close at the end of input, and the echo was lost in about 1 run of 3."""
    command = readme_pipe_example().replace("127.0.0.1:9001", f"127.0.0.1:{echo_server.port}")
    assert command != readme_pipe_example()
    command = command.replace("python -m wsstack", shlex.quote(sys.executable) + " -m wsstack")
    for _ in range(10):
        result = subprocess.run(
            command, shell=True, check=False, capture_output=True, text=True, timeout=30, env=cli_env()
        )
        assert (result.returncode, result.stdout) == (0, "< hello\n"), result.stderr


def test_the_linger_waits_for_a_late_answer_and_ends_when_the_server_closes() -> None:
    """A reply 0.3 s after the last line still arrives; the server's close ends a 30 s linger at once."""

    async def late(ws: Any) -> None:
        line = await ws.recv()
        await asyncio.sleep(0.3)
        await ws.send(f"late answer to {line}")
        await ws.close(1000, "bye")

    async def scenario() -> None:
        srv = await serve_once(late)
        try:
            async with client_process(f"ws://127.0.0.1:{srv.port}/ws", "--linger", "30") as proc:
                assert proc.stdin is not None and proc.stderr is not None
                proc.stdin.write(b"hi\n")
                proc.stdin.close()  # end of input right after the line, as with printf
                assert await read_line(proc) == "< late answer to hi\n"
                assert await asyncio.wait_for(proc.wait(), 10) == 0
                assert "connection closed: 1000 bye" in (await proc.stderr.read()).decode()
        finally:
            await srv.close()

    run(scenario())


def test_format_message() -> None:
    assert format_message("hi") == "< hi"
    assert format_message(b"\xff") == "< [1 bytes] ff"
    assert format_message(bytes(100)).endswith("00...")


# --------------------------------------------------------------------- demo


def test_demo_prints_the_address_to_open(demo_server: CLIServer) -> None:
    """Once bound, with the port it found (the fixture asks for port 0)."""
    assert f"chat demo: open http://127.0.0.1:{demo_server.port}/ in a browser" in demo_server.output()


def test_demo_serves_the_page(demo_server: CLIServer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{demo_server.port}/", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        page = answer.read().decode()
    assert "<title>wsstack chat</title>" in page
    assert "/ws?name=" in page
    head = urllib.request.Request(f"http://127.0.0.1:{demo_server.port}/", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as answer:
        assert answer.status == 200
        assert answer.read() == b""
    assert http_error(f"http://127.0.0.1:{demo_server.port}/ws").code == 400


def test_demo_chat_over_ws(demo_server: CLIServer) -> None:
    async def scenario() -> None:
        base = f"ws://127.0.0.1:{demo_server.port}/ws"
        alice = await connect(f"{base}?name=alice", options=Options(enable_compression=True))
        assert alice.extensions == ["permessage-deflate"]
        assert await alice.recv() == "alice joined"
        async with websockets_connect(f"{base}?name=%20bob%20%20the%20builder", proxy=None) as bob:
            assert await bob.recv() == "alice joined"  # the room's recent lines first
            assert await alice.recv() == "bob the builder joined"
            assert await bob.recv() == "bob the builder joined"
            await bob.send("hi alice")
            assert await alice.recv() == "bob the builder: hi alice"
            assert await bob.recv() == "bob the builder: hi alice"
            await alice.send("hi bob")
            assert await bob.recv() == "alice: hi bob"
        assert await alice.recv() == "alice: hi bob"
        assert await alice.recv() == "bob the builder left"
        await alice.close()

    run(scenario())
    assert "chat: alice: hi bob" in demo_server.output()


def test_clean_name() -> None:
    assert clean_name("  ann \t lee ") == "ann lee"
    assert clean_name("") == "guest"
    assert len(clean_name("x" * 100)) == 32
