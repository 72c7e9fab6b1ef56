"""A real browser against wsstack: headless Chromium uses the demo chat page and the seed's JS client.

Chromium is driven as tests/browser.py describes; without it the tests skip,
or fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import uvicorn

import sync_helpers
from browser import TIMEOUT, Page, chromium, find_chromium
from redis_server import RedisServer
from supervisor import Supervisor, demo_worker_of
from wsstack.asyncio import Server, connect
from wsstack.cli import demo
from wsstack.uvicorn import WebSocketProtocol

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


@contextlib.asynccontextmanager
async def serving(srv: Server) -> AsyncIterator[int]:
    await srv.listen(0)
    try:
        yield srv.port
    finally:
        await srv.close()


def test_demo_chat_in_chromium(tmp_path: Path) -> None:
    chromium_binary = find_chromium()

    async def scenario() -> None:
        srv = demo.build_server()
        async with serving(srv) as port, chromium(chromium_binary, tmp_path) as devtools:
            page = await devtools.open(f"http://127.0.0.1:{port}/")
            await page.evaluate(
                "document.getElementById('name').value = 'chromium';document.getElementById('join').click();"
            )
            await page.wait_for_text("#messages li", "chromium joined")
            assert await page.evaluate("document.getElementById('status').textContent") == "Connected as chromium."

            # Server side: the browser offered permessage-deflate and the demo accepted it.
            (browser_side,) = srv.connections
            assert "permessage-deflate" in browser_side.extensions

            async with connect(f"ws://127.0.0.1:{port}/ws?name=python") as python:
                assert await python.recv() == "chromium joined"  # the room's recent lines first
                assert await python.recv() == "python joined"
                await page.wait_for_text("#messages li", "python joined")

                await page.evaluate(
                    "document.getElementById('message').value = 'hello from chromium';"
                    "document.getElementById('send').click();"
                )
                assert await python.recv() == "chromium: hello from chromium"
                await page.wait_for_text("#messages li", "chromium: hello from chromium")

                # Big enough that compression matters, both ways through the browser.
                long_line = "la " * 5000
                await python.send(long_line)
                assert await python.recv() == f"python: {long_line}"
                await page.wait_for_text("#messages li", f"python: {long_line}")

                await python.send("hello from python")
                await page.wait_for_text("#messages li", "python: hello from python")

            await page.wait_for_text("#messages li", "python left")

    run(scenario())


async def join_as(page: Page, name: str) -> None:
    await page.evaluate(
        f"document.getElementById('name').value = {json.dumps(name)};document.getElementById('join').click();"
    )
    await page.wait_for_text("#messages li", f"{name} joined")


async def say(page: Page, text: str) -> None:
    await page.evaluate(
        f"document.getElementById('message').value = {json.dumps(text)};document.getElementById('send').click();"
    )


def test_demo_across_two_workers_in_chromium(tmp_path: Path, redis_server: RedisServer) -> None:
    """``demo --workers 2 --redis URL``: two pages on different workers and a Python client are in one room."""
    chromium_binary = find_chromium()
    command = [sys.executable, "-m", "wsstack", "-v", "demo", "--workers", "2", "--port", "0"]
    sup = Supervisor(tmp_path, [*command, "--redis", redis_server.url])

    async def scenario() -> None:
        async with chromium(chromium_binary, tmp_path) as devtools:
            # Pages join until two sit on different workers (the kernel picks by a hash: about 2 tries).
            pages: dict[int, tuple[str, Page]] = {}
            for n in range(12):
                name = f"page{n}"
                page = await devtools.open(f"http://127.0.0.1:{sup.port}/")
                await join_as(page, name)
                pages.setdefault(demo_worker_of(sup, name), (name, page))
                if len(pages) == 2:
                    break
            assert set(pages) == sup.children()
            (a_name, a), (b_name, b) = pages.values()

            async with connect(f"ws://127.0.0.1:{sup.port}/ws?name=python") as python:
                while await python.recv() != "python joined":
                    pass  # the room's recent lines come first
                await a.wait_for_text("#messages li", "python joined")
                await b.wait_for_text("#messages li", "python joined")
                for speaker, page in ((a_name, a), (b_name, b)):
                    await say(page, f"hello from {speaker}")
                    line = f"{speaker}: hello from {speaker}"
                    assert await python.recv() == line
                    await a.wait_for_text("#messages li", line)
                    await b.wait_for_text("#messages li", line)
                await python.send("hello from python")
                await a.wait_for_text("#messages li", "python: hello from python")
                await b.wait_for_text("#messages li", "python: hello from python")
            await a.wait_for_text("#messages li", "python left")
            await b.wait_for_text("#messages li", "python left")

    try:
        run(scenario())
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(15) == 0
        assert b"Traceback" not in sup.log()
    finally:
        sup.stop()


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py without putting examples/ on sys.path."""
    spec = importlib.util.spec_from_file_location(f"wsstack_example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_seed_browser_client_against_the_echo_example(tmp_path: Path) -> None:
    """examples/browser_client.html, opened from disk, says hello to examples/echo_server.py."""
    chromium_binary = find_chromium()

    async def scenario() -> None:
        srv = load_example("echo_server").build_server()
        async with serving(srv) as port, chromium(chromium_binary, tmp_path) as devtools:
            page_url = (ROOT / "examples" / "browser_client.html").as_uri() + f"?url=ws://127.0.0.1:{port}/ws"
            page = await devtools.open(page_url)
            await page.wait_for("document.getElementById('log').textContent.includes('Received: Hello, Server!')")
            assert (await page.evaluate("document.getElementById('log').textContent")).startswith("Connected\n")

    run(scenario())


def test_seed_browser_client_against_the_sync_echo_example(tmp_path: Path) -> None:
    """examples/browser_client.html in headless Chromium says hello to examples/sync_echo_server.py."""
    binary = find_chromium()
    server = load_example("sync_echo_server").build_server()

    async def scenario(port: int) -> None:
        async with chromium(binary, tmp_path) as devtools:
            page_url = (ROOT / "examples" / "browser_client.html").as_uri() + f"?url=ws://127.0.0.1:{port}/ws"
            page = await devtools.open(page_url)
            await page.wait_for("document.getElementById('log').textContent.includes('Received: Hello, Server!')")
            assert (await page.evaluate("document.getElementById('log').textContent")).startswith("Connected\n")
            # The browser offered permessage-deflate; the example's default options decline it.
            (browser_side,) = server.connections
            assert browser_side.extensions == []

    with sync_helpers.serving(server) as url:
        run(scenario(sync_helpers.port_of(url)))


def test_fastapi_chat_example_in_chromium_on_uvicorn(tmp_path: Path) -> None:
    """examples/fastapi_chat.py under uvicorn with ``--ws wsstack.uvicorn:WebSocketProtocol``, used from Chromium."""
    chromium_binary = find_chromium()
    example = load_example("fastapi_chat")

    async def scenario() -> None:
        config = uvicorn.Config(
            example.app, host="127.0.0.1", port=0, ws="wsstack.uvicorn:WebSocketProtocol", log_level="warning"
        )
        server = uvicorn.Server(config)
        serve = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with chromium(chromium_binary, tmp_path) as devtools:
                page = await devtools.open(f"http://127.0.0.1:{port}/")
                await page.evaluate(
                    "document.getElementById('name').value = 'chromium';document.getElementById('join').click();"
                )
                await page.wait_for_text("#messages li", "chromium joined")

                # The browser's connection is ours, and took the permessage-deflate it offered.
                (browser_side,) = [p for p in server.server_state.connections if isinstance(p, WebSocketProtocol)]
                assert [extension.name for extension in browser_side.core.extensions] == ["permessage-deflate"]

                async with connect(f"ws://127.0.0.1:{port}/ws?name=python") as python:
                    assert await python.recv() == "python joined"
                    await page.wait_for_text("#messages li", "python joined")
                    await page.evaluate(
                        "document.getElementById('message').value = 'hello from chromium';"
                        "document.getElementById('send').click();"
                    )
                    assert await python.recv() == "chromium: hello from chromium"
                    long_line = "la " * 5000
                    await python.send(long_line)
                    assert await python.recv() == f"python: {long_line}"
                    await page.wait_for_text("#messages li", f"python: {long_line}")
                await page.wait_for_text("#messages li", "python left")
        finally:
            server.should_exit = True
            await serve

    run(scenario())
