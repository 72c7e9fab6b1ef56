"""The examples in examples/, each served in-process on a free port and used by real clients.

Each example module has ``build_server()``; a test starts it with
``listen(0)``, talks to it with wsstack's client or the ``websockets``
package, and checks what the example promises. The last test runs every
example as a script, as a user would, and stops it with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from sync_helpers import STEP, raw_http
from sync_helpers import serving as sync_serving
from waiting import bounded, wait_until, wait_until_async
from wsstack import HandshakeError, Opcode, Options
from wsstack.asyncio import Server, connect
from wsstack.sync import WebSocket as SyncWebSocket
from wsstack.sync import connect as sync_connect

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 20.0

T = TypeVar("T")


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py without putting examples/ on sys.path."""
    spec = importlib.util.spec_from_file_location(f"wsstack_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: dataclasses look their module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


@asynccontextmanager
async def serving(srv: Server) -> AsyncIterator[str]:
    """Listen on a free port; yield the base ws:// URL; shut down gracefully."""
    await srv.listen(0)
    try:
        yield f"ws://127.0.0.1:{srv.port}"
    finally:
        await srv.close()


async def http_status(port: int, path: str) -> int:
    """The status of a plain (non-upgrade) GET."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


# ---------------------------------------------------------------- echo_server


def test_echo_server_returns_text_and_binary(capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        srv = load_example("echo_server").build_server()
        async with serving(srv) as base:
            async with connect(f"{base}/ws") as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00\xff binary")
                assert await ws.recv() == b"\x00\xff binary"
            async with websockets_connect(f"{base}/ws", proxy=None) as peer:
                await peer.send("from websockets")
                assert await peer.recv() == "from websockets"
            assert await http_status(srv.port, "/ws") == 400

    run(scenario())
    out = capsys.readouterr().out
    assert "WebSocket client connected" in out
    assert "Received: 'hello'" in out
    assert "WebSocket client disconnected" in out


# ------------------------------------------------------------ message_handler


def test_message_handler_echoes_and_counts() -> None:
    async def scenario() -> None:
        srv = load_example("message_handler").build_server()
        async with serving(srv) as base:
            async with connect(f"{base}/ws") as ws:
                sent: list[str | bytes] = ["hello", b"\x00\xff binary", "é" * 100]
                for message in sent:
                    await ws.send(message)
                assert [await ws.recv() for _ in sent] == sent
            async with websockets_connect(f"{base}/ws", proxy=None) as peer:
                await peer.send("from websockets")
                assert await peer.recv() == "from websockets"
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"messages echoed: 4\n")

    run(scenario())


# ----------------------------------------------------------- broadcast_server


def test_broadcast_reaches_every_client() -> None:
    async def scenario() -> None:
        srv = load_example("broadcast_server").build_server()
        async with serving(srv) as base:
            a, b, c = [await connect(f"{base}/ws") for _ in range(3)]
            await a.send("from a")
            for ws in (a, b, c):
                assert await ws.recv() == "from a"
            await b.send(b"\x01\x02")
            for ws in (a, b, c):
                assert await ws.recv() == b"\x01\x02"
            await c.close()
            await a.send("after c left")
            assert await a.recv() == "after c left"
            assert await b.recv() == "after c left"
            await a.close()
            await b.close()

    run(scenario())


def test_broadcast_with_a_websockets_client() -> None:
    async def scenario() -> None:
        srv = load_example("broadcast_server").build_server()
        async with (
            serving(srv) as base,
            connect(f"{base}/ws") as ours,
            websockets_connect(f"{base}/ws", proxy=None) as theirs,
        ):
            await theirs.send("interop")
            assert await ours.recv() == "interop"
            assert await theirs.recv() == "interop"

    run(scenario())


# -------------------------------------------------------------- message_types


def test_message_types_reports_each_opcode(capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        srv = load_example("message_types").build_server()
        async with serving(srv) as base, websockets_connect(f"{base}/ws", proxy=None, ping_interval=None) as peer:
            await peer.send("hello")
            await peer.send(b"\x00" * 5)
            # websockets sends one frame per item, then an empty final frame.
            await peer.send(["frag", "ment", "ed"])
            await peer.pong(b"unsolicited")
            # Automatic pongs are off on this server: this pong comes from the handler.
            latency = await asyncio.wait_for(await peer.ping(b"are you there"), 5)
            assert latency >= 0

    run(scenario())
    out = capsys.readouterr().out
    assert "Text: hello" in out
    assert "Binary: 5 bytes" in out
    assert "Text: frag" in out
    assert "Continuation: 4 bytes, final: False" in out
    assert "Continuation: 2 bytes, final: False" in out
    assert "Continuation: 0 bytes, final: True" in out
    assert "Pong received" in out
    assert "Close frame received" in out


# ------------------------------------------------------------------ heartbeat


@pytest.mark.parametrize("builtin", [False, True], ids=["manual", "builtin"])
def test_heartbeat_pings_a_live_client(builtin: bool, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        srv = load_example("heartbeat").build_server(interval=0.05, timeout=2.0, builtin=builtin)
        async with serving(srv) as base, connect(f"{base}/ws") as ws:
            # Frame mode shows the server's pings; the client answers them by itself.
            pings = 0
            while pings < 3:
                frame = await ws.recv_frame()
                assert frame is not None
                pings += frame.opcode == Opcode.PING
            assert ws.is_open

    run(scenario())
    if not builtin:
        assert "Heartbeat: pong after" in capsys.readouterr().out


@pytest.mark.parametrize("builtin", [False, True], ids=["manual", "builtin"])
def test_heartbeat_closes_a_silent_client(builtin: bool, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        srv = load_example("heartbeat").build_server(interval=0.05, timeout=0.2, builtin=builtin)
        async with serving(srv) as base:
            # A client that never answers pings looks like a dead peer.
            ws = await connect(f"{base}/ws", options=Options(auto_pong=False))
            started = time.monotonic()
            assert await ws.recv() is None
            assert time.monotonic() - started < 5
            assert ws.close_code == 1011

    run(scenario())
    if not builtin:
        assert "Heartbeat failed, connection lost" in capsys.readouterr().out


# ---------------------------------------------------------------- compression


def test_compression_is_negotiated_with_wsstack() -> None:
    async def scenario() -> None:
        srv = load_example("compression").build_server()
        async with serving(srv) as base, connect(f"{base}/ws", options=Options(enable_compression=True)) as ws:
            assert ws.extensions == ["permessage-deflate"]
            message = '{"event": "tick", "value": 42}\n' * 2000
            await ws.send(message)
            frame = await ws.recv_frame()
            assert frame is not None
            # RSV1 marks a compressed message on the wire; the payload arrives inflated.
            assert frame.rsv1
            assert frame.payload.decode() == message

    run(scenario())


def test_compression_is_negotiated_with_websockets() -> None:
    async def scenario() -> None:
        srv = load_example("compression").build_server()
        async with serving(srv) as base, websockets_connect(f"{base}/ws", proxy=None) as peer:
            assert peer.response is not None
            assert "permessage-deflate" in peer.response.headers.get("Sec-WebSocket-Extensions", "")
            await peer.send("x" * 100_000)
            assert await peer.recv() == "x" * 100_000

    run(scenario())


def test_compression_is_optional_for_the_client() -> None:
    async def scenario() -> None:
        srv = load_example("compression").build_server()
        async with serving(srv) as base, connect(f"{base}/ws") as ws:
            assert ws.extensions == []
            await ws.send("plain")
            assert await ws.recv() == "plain"

    run(scenario())


# --------------------------------------------------------------- subprotocols


@pytest.mark.parametrize(
    ("offered", "expected", "reply"),
    [
        (["chat"], "chat", "hi"),
        (["binary"], "binary", b"hi"),
        (["binary", "chat"], "chat", "hi"),  # the server prefers chat
        (["superchat"], None, "hi"),
        ([], None, "hi"),
    ],
)
def test_subprotocol_is_negotiated(offered: list[str], expected: str | None, reply: str | bytes) -> None:
    async def scenario() -> None:
        srv = load_example("subprotocols").build_server()
        async with serving(srv) as base, connect(f"{base}/ws", subprotocols=offered) as ws:
            assert ws.subprotocol == expected
            await ws.send("hi")
            assert await ws.recv() == reply

    run(scenario())


def test_subprotocol_with_a_websockets_client() -> None:
    async def scenario() -> None:
        srv = load_example("subprotocols").build_server()
        async with (
            serving(srv) as base,
            websockets_connect(f"{base}/ws", proxy=None, subprotocols=[Subprotocol("binary")]) as peer,
        ):
            assert peer.subprotocol == "binary"
            await peer.send("hi")
            assert await peer.recv() == b"hi"

    run(scenario())


# ---------------------------------------------------------- connection_limits


def test_connection_limit_queues_the_next_client() -> None:
    async def scenario() -> None:
        srv = load_example("connection_limits").build_server(max_connections=1)
        async with serving(srv) as base:
            first = await connect(f"{base}/ws")
            second = asyncio.ensure_future(connect(f"{base}/ws"))
            await asyncio.sleep(0.3)  # what is tested: the second client is still kept waiting after a while
            assert not second.done(), "the second client got in while the first held the only slot"
            await first.close()
            ws = await asyncio.wait_for(second, 5)
            await ws.send("my turn")
            assert await ws.recv() == "my turn"
            await ws.close()

    run(scenario())


def test_connection_limit_frees_the_slot_of_a_client_that_gave_up() -> None:
    async def scenario() -> None:
        srv = load_example("connection_limits").build_server(max_connections=1)
        async with serving(srv) as base:
            first = await connect(f"{base}/ws")
            with pytest.raises(asyncio.TimeoutError):
                await connect(f"{base}/ws", options=Options(open_timeout=0.2))
            await first.close()
            # The abandoned request gets the slot, finds its client gone and lets go.
            async with connect(f"{base}/ws", options=Options(open_timeout=5)) as third:
                await third.send("in")
                assert await third.recv() == "in"

    run(scenario())


def test_builtin_connection_limit_refuses_with_503() -> None:
    async def scenario() -> None:
        srv = load_example("connection_limits").build_server(max_connections=1, builtin=True)
        async with serving(srv) as base:
            first = await connect(f"{base}/ws")
            with pytest.raises(HandshakeError) as refused:
                await connect(f"{base}/ws")
            assert refused.value.status == 503
            await first.close()

            async def slot_free() -> bool:
                return not srv.connections

            await wait_until_async(slot_free)
            async with connect(f"{base}/ws") as again:
                await again.send("room now")
                assert await again.recv() == "room now"

    run(scenario())


# ------------------------------------------------------------------ chat_room


def test_chat_room_announces_joins_messages_and_leaves() -> None:
    async def scenario() -> None:
        srv = load_example("chat_room").build_server()
        async with serving(srv) as base:
            alice = await connect(f"{base}/ws?name=alice")
            assert await alice.recv() == "alice joined"
            bob = await connect(f"{base}/ws?name=bob")
            assert await bob.recv() == "bob joined"
            assert await alice.recv() == "bob joined"

            await alice.send("hi bob")
            assert await bob.recv() == "alice: hi bob"
            assert await alice.recv() == "alice: hi bob"

            await bob.close()
            assert await alice.recv() == "bob left"

            guest = await connect(f"{base}/ws")
            assert await alice.recv() == "guest joined"
            await guest.close()
            assert await alice.recv() == "guest left"
            await alice.close()
            assert await http_status(srv.port, "/ws") == 400

    run(scenario())


def test_chat_room_survives_a_member_vanishing() -> None:
    async def scenario() -> None:
        srv = load_example("chat_room").build_server()
        async with serving(srv) as base:
            alice = await connect(f"{base}/ws?name=alice")
            assert await alice.recv() == "alice joined"
            carol = await websockets_connect(f"{base}/ws?name=carol", proxy=None)
            assert await alice.recv() == "carol joined"
            carol.transport.abort()  # no closing handshake: a pulled cable
            assert await alice.recv() == "carol left"
            await alice.send("still here")
            assert await alice.recv() == "alice: still here"
            await alice.close()

    run(scenario())


# ---------------------------------------------------- the examples on threads


@bounded(30)
def test_sync_echo_example(capsys: pytest.CaptureFixture[str]) -> None:
    server = load_example("sync_echo_server").build_server()
    with sync_serving(server) as url:
        with sync_connect(url) as ws:
            ws.send("hello")
            assert ws.recv(timeout=STEP) == "hello"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=STEP) == b"\x00\x01"
        assert raw_http(server.port, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 400"
        )
    out = capsys.readouterr().out
    assert "WebSocket client connected" in out and "Received: 'hello'" in out
    assert "WebSocket client disconnected" in out


@bounded(30)
def test_sync_chat_room_example() -> None:
    server = load_example("sync_chat_room").build_server()
    with sync_serving(server) as url:
        alice = sync_connect(f"{url}?name=alice")
        assert alice.recv(timeout=STEP) == "alice joined"
        bob = sync_connect(f"{url}?name=bob")
        assert bob.recv(timeout=STEP) == "bob joined"
        assert alice.recv(timeout=STEP) == "bob joined"
        alice.send("hi bob")
        assert bob.recv(timeout=STEP) == "alice: hi bob"
        assert alice.recv(timeout=STEP) == "alice: hi bob"
        bob.close()
        assert alice.recv(timeout=STEP) == "bob left"
        with ws_connect(f"{url}?name=carol") as carol:
            assert alice.recv(timeout=STEP) == "carol joined"
            carol.socket.shutdown(socket.SHUT_RDWR)  # no closing handshake: a pulled cable
            assert alice.recv(timeout=STEP) == "carol left"
        alice.send("still here")
        assert alice.recv(timeout=STEP) == "alice: still here"
        alice.close()


# ------------------------------------------------------------- as scripts


def script_env() -> dict[str, str]:
    """The environment for a script: wsstack importable even without an installed copy."""
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def connect_when_up(url: str, timeout: float, **kwargs: Any) -> Any:
    """A connection once the script listens (it says where before it binds, so its output tells nothing)."""

    async def attempt() -> Any:
        try:
            return await connect(url, **kwargs)
        except OSError:
            return None

    return await wait_until_async(attempt, timeout, interval=0.05)


@pytest.mark.parametrize(
    "name",
    [
        "echo_server",
        "message_handler",
        "broadcast_server",
        "message_types",
        "heartbeat",
        "compression",
        "subprotocols",
        "connection_limits",
        "chat_room",
        "fastapi_chat",
    ],
)
def test_example_runs_as_a_script_until_ctrl_c(name: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=script_env(),
    )
    try:

        async def scenario() -> None:
            ws = await connect_when_up(f"ws://127.0.0.1:{port}/ws?name=script", 10)
            # Every example answers pings (message_types by hand).
            assert await asyncio.wait_for(ws.ping(), 5) >= 0
            await ws.close()

        run(scenario())
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, output.decode(errors="replace")
        assert f"127.0.0.1:{port}".encode() in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fastapi_chat_with_the_readme_uvicorn_command() -> None:
    """``uvicorn examples.fastapi_chat:app --ws wsstack.uvicorn:WebSocketProtocol``, as the README has it."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "examples.fastapi_chat:app",
        "--ws",
        "wsstack.uvicorn:WebSocketProtocol",
    ]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=script_env()
    )
    try:

        async def scenario() -> None:
            alice = await connect_when_up(f"ws://127.0.0.1:{port}/ws?name=alice", 10)
            assert await alice.recv() == "alice joined"
            async with connect(f"ws://127.0.0.1:{port}/ws?name=bob") as bob:
                assert await bob.recv() == "bob joined"
                assert await alice.recv() == "bob joined"
                await alice.send("hi bob")
                assert await bob.recv() == "alice: hi bob"
                assert await alice.recv() == "alice: hi bob"
                await bob.send(b"binary is not chat")
                await bob.send("hi alice")
                assert await alice.recv() == "bob: hi alice"
            assert await alice.recv() == "bob left"
            await alice.close()

        run(scenario())
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=STEP)
        assert proc.returncode == 0, output.decode(errors="replace")
        assert b'"WebSocket /ws?name=alice" [accepted]' in output
        assert b"Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def sync_connect_when_up(url: str, timeout: float) -> SyncWebSocket:
    """``connect_when_up`` with the threaded client."""

    def attempt() -> SyncWebSocket | None:
        try:
            return sync_connect(url)
        except OSError:
            return None

    return wait_until(attempt, timeout, interval=0.05)


@pytest.mark.parametrize("name", ["sync_echo_server", "sync_chat_room"])
@bounded(40)
def test_sync_example_runs_as_a_script_until_ctrl_c(name: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=script_env(),
    )
    try:
        ws = sync_connect_when_up(f"ws://127.0.0.1:{port}/ws?name=script", 10)
        assert ws.ping().result(STEP) >= 0
        ws.send("hi")
        assert ws.recv(timeout=STEP) in ("hi", "script joined")
        ws.close()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=STEP)
        assert proc.returncode == 0, output.decode(errors="replace")
        assert f"127.0.0.1:{port}".encode() in output
        assert b"Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_examples_have_help() -> None:
    for script in sorted(EXAMPLES.glob("*.py")):
        command = [sys.executable, str(script), "--help"]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30, env=script_env())
        assert result.returncode == 0, result.stderr
        assert "--port" in result.stdout and "--host" in result.stdout
