"""Headless Chromium driven through the Chrome DevTools Protocol, for tests that need a real browser.

CDP is JSON over a WebSocket, so the remote control is wsstack's own asyncio
client: no Selenium, no chromedriver. ``Runtime.evaluate`` fills in and
clicks a page's forms and reads its DOM.

Without Chromium a test skips, unless the ``CI`` environment variable is
set: there a missing browser is a failure. ``scripts/install-browser``
installs it; ``WSSTACK_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from waiting import wait_until_async
from wsstack import Options
from wsstack.asyncio import WebSocket, connect

__all__ = ["TIMEOUT", "STEP_TIMEOUT", "DevTools", "DevToolsError", "Page", "chromium", "find_chromium"]

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


def find_chromium() -> str:
    """The browser's path; skips the test without one, or fails it on CI."""
    path = os.environ.get("WSSTACK_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if path is None:
        reason = "Chromium is not installed (scripts/install-browser installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so the browser tests must run")
        pytest.skip(reason)
    return path


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

        async def value() -> Any:
            return await self.evaluate(expression)

        try:
            return await wait_until_async(value, STEP_TIMEOUT, interval=0.05)
        except AssertionError:
            raise AssertionError(f"still false after {STEP_TIMEOUT} s: {expression}") from None

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

        def written() -> list[str]:
            lines = port_file.read_text().split() if port_file.exists() else []
            return lines if len(lines) == 2 else []

        async def written_or_gone() -> bool:
            return bool(written()) or proc.returncode is not None

        try:
            await wait_until_async(written_or_gone, STEP_TIMEOUT, interval=0.05)
        except AssertionError:
            pass  # reported below, with what Chromium wrote
        lines = written()
        if not lines:
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
