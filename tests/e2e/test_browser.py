"""A real browser against wsstack: headless Chromium uses the demo chat page and the seed's JS client.

Chromium is driven through the Chrome DevTools Protocol, which is JSON over
a WebSocket, so the test's remote control is wsstack's own asyncio client:
no Selenium, no chromedriver. ``Runtime.evaluate`` fills in and clicks the
page's forms and reads its DOM.

Without Chromium the tests skip, unless the ``CI`` environment variable is
set: there a missing browser is a failure. ``scripts/install-browser``
installs it; ``WSSTACK_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from wsstack import Options
from wsstack.asyncio import Server, WebSocket, connect
from wsstack.cli import demo

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 90.0
STEP_TIMEOUT = 15.0
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # containers and root: there is no user namespace to sandbox in
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--disable-sync",
    "--mute-audio",
)

T = TypeVar("T")


def find_chromium() -> str:
    """The browser's path; skips the test without one, or fails it on CI."""
    path = os.environ.get("WSSTACK_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if path is None:
        reason = "Chromium is not installed (scripts/install-browser installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so the browser tests must run")
        pytest.skip(reason)
    return path


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class DevToolsError(Exception):
    """An error answer to a DevTools command, or a page-side JavaScript exception."""


class DevTools:
    """A minimal CDP client: numbered commands, answers matched by id, events ignored."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            answer = json.loads(message)
            future = self.pending.pop(answer.get("id", 0), None)
            if future is None or future.done():
                continue  # an event, or an answer nobody waits for any more
            if "error" in answer:
                future.set_exception(DevToolsError(answer["error"]))
            else:
                future.set_result(answer.get("result", {}))
        for future in self.pending.values():
            future.set_exception(DevToolsError("the DevTools connection closed"))

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        command: dict[str, Any] = {"id": next(self.ids), "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[command["id"]] = future
        await self.ws.send(json.dumps(command))
        return await asyncio.wait_for(future, STEP_TIMEOUT)

    async def open(self, url: str) -> Page:
        """A new tab on ``url``, with a session attached to it."""
        target = await self.call("Target.createTarget", {"url": url})
        attached = await self.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        # A new tab starts on about:blank, already complete, before it commits to ``url``.
        await page.wait_for("location.href !== 'about:blank' && document.readyState === 'complete'")
        return page

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


class Page:
    """One tab: JavaScript in, JSON values out."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    async def evaluate(self, expression: str) -> Any:
        params = {"expression": expression, "returnByValue": True}
        result = await self.devtools.call("Runtime.evaluate", params, self.session)
        if "exceptionDetails" in result:
            raise DevToolsError(result["exceptionDetails"])
        return result["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        """Poll until ``expression`` is truthy; its value."""
        deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT
        while not (value := await self.evaluate(expression)):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still false after {STEP_TIMEOUT} s: {expression}")
            await asyncio.sleep(0.05)
        return value

    async def wait_for_text(self, selector: str, text: str) -> None:
        """Wait until an element matching ``selector`` has exactly ``text`` as its text."""
        await self.wait_for(
            f"Array.from(document.querySelectorAll({json.dumps(selector)}), e => e.textContent)"
            f".includes({json.dumps(text)})"
        )


@contextlib.asynccontextmanager
async def chromium(binary: str, workdir: Path) -> AsyncIterator[DevTools]:
    """Headless Chromium with DevTools on a free port, and our client connected to it."""
    profile = workdir / "profile"
    log_path = workdir / "chromium.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group, so its helpers can be stopped with it
        )
    try:
        # Chromium writes the port it bound, then the browser endpoint's path.
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) == 2:
                break
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        else:
            lines = []
        if len(lines) != 2:
            raise AssertionError(f"Chromium did not start DevTools:\n{log_path.read_text(errors='replace')[-3000:]}")
        port, path = lines
        ws = await connect(f"ws://127.0.0.1:{port}{path}", options=Options(max_message_size=64 << 20))
        devtools = DevTools(ws)
        try:
            yield devtools
        finally:
            await devtools.close()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        # Renderer and utility processes normally follow the browser out; make sure.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


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


def load_echo_example() -> Any:
    spec = importlib.util.spec_from_file_location("wsstack_example_echo_server", ROOT / "examples" / "echo_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_seed_browser_client_against_the_echo_example(tmp_path: Path) -> None:
    """examples/browser_client.html, opened from disk, says hello to examples/echo_server.py."""
    chromium_binary = find_chromium()

    async def scenario() -> None:
        srv = load_echo_example().build_server()
        async with serving(srv) as port, chromium(chromium_binary, tmp_path) as devtools:
            page_url = (ROOT / "examples" / "browser_client.html").as_uri() + f"?url=ws://127.0.0.1:{port}/ws"
            page = await devtools.open(page_url)
            await page.wait_for("document.getElementById('log').textContent.includes('Received: Hello, Server!')")
            assert (await page.evaluate("document.getElementById('log').textContent")).startswith("Connected\n")

    run(scenario())
