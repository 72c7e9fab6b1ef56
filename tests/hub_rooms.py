"""A chat-room server over a hub, for the hub's tests and as a child process (``python tests/hub_rooms.py``).

``/ws?topic=NAME`` subscribes the connection to ``NAME`` (default
``room``) and publishes every message it sends there; a publish that
raises ``HubUnavailable`` is answered with ``!unavailable <n>`` (``n``: the
local subscribers it reached) so the tests can see the error was typed.
As a script it serves one backend on a given port and prints ``ready``.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from wsstack.asyncio import Context, Server, WebSocket, connect
from wsstack.hub import Backend, Backoff, Hub, HubUnavailable, MemoryBackend
from wsstack.options import Options
from wsstack.session import SharedFrames


def room_server(hub: Hub, options: Options | None = None) -> Server:
    server = Server(options)

    @server.get("/ws")
    async def room(ctx: Context) -> None:
        topic = ctx.query("topic", "room")
        ws = await ctx.upgrade_to_websocket()
        await hub.subscribe(ws, topic)
        await ws.send("!subscribed")
        async for message in ws:
            try:
                await hub.publish(topic, message)
            except HubUnavailable as exc:
                await ws.send(f"!unavailable {exc.local_receivers}")

    return server


#: Reconnection backoff short enough for a test to watch several attempts.
FAST = Backoff(initial=0.02, maximum=0.2)


def run(coro: Any, timeout: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def joined(url: str) -> WebSocket:
    """A client of ``room_server`` once its subscription is confirmed."""
    ws = await connect(url)
    assert await asyncio.wait_for(ws.recv(), 10) == "!subscribed"
    return ws


async def recv(ws: WebSocket, timeout: float = 10) -> Any:
    return await asyncio.wait_for(ws.recv(), timeout)


def make_backend(kind: str, url: str) -> Backend:
    if kind == "memory":
        return MemoryBackend()
    if kind == "pubsub":
        from wsstack.hub.redis_pubsub import RedisPubSubBackend

        return RedisPubSubBackend(url, connect_retries=None)
    from wsstack.hub.redis_streams import RedisStreamsBackend

    return RedisStreamsBackend(url, connect_retries=None)


class Recorder:
    """A subscriber that keeps what the hub hands it, to see that it hands everyone the same frames."""

    def __init__(self) -> None:
        self.frames: list[SharedFrames] = []

    def write_shared(self, frames: SharedFrames) -> bool:
        self.frames.append(frames)
        return True

    def add_close_callback(self, callback: Callable[[Any], object]) -> None:
        pass


class Worker:
    """``hub_rooms.py`` as a child process: one server process of a multi-process deployment."""

    def __init__(self, kind: str, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, kind, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        line = self.process.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"the {kind} worker did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


async def main(kind: str, url: str, port: int) -> None:
    hub = Hub(make_backend(kind, url))
    await hub.start()
    server = room_server(hub)
    await server.listen(port, "127.0.0.1", backlog=1024)
    print("ready", server.port, flush=True)
    # SIGTERM ends the worker as a deployment would: the server, then the hub (and coverage data is saved).
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.close(timeout=2)
    await hub.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=["memory", "pubsub", "streams"])
    parser.add_argument("url")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.backend, args.url, args.port))
    except KeyboardInterrupt:
        sys.exit(0)
