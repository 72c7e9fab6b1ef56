"""``python -m wsstack demo --workers 2 --redis URL``: one chat room over two worker processes and a real Redis.

The demo runs as a user runs it (a subprocess, ``-v`` so that each join is
logged with the pid of the worker that took it: that is how the tests know
which worker each client is on). The clients are wsstack's own; Redis is a
real redis-server on a free loopback port. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from redis_server import RedisServer
from supervisor import Supervisor, demo_worker_of
from waiting import bounded
from wsstack.asyncio import WebSocket, connect
from wsstack.cli.demo import ChatRoom, build_server
from wsstack.hub import MemoryBackend
from wsstack.session import Message

T = TypeVar("T")

CLIENTS = 50
PER_CLIENT = 5
STEP = 10.0  # seconds for one expected line


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsstack", "-v", "demo", "--workers", "2", "--port", "0", *args]


@pytest.fixture
def demo(tmp_path: Path, redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[Supervisor]:
    """The demo on two workers, its room on ``redis_server``; ``request.param``: more arguments."""
    sup = Supervisor(tmp_path, demo_command("--redis", redis_server.url, *getattr(request, "param", [])))
    try:
        yield sup
    finally:
        sup.stop()


async def recv(ws: WebSocket) -> str:
    message = await asyncio.wait_for(ws.recv(), STEP)
    assert isinstance(message, str), message
    return message


async def until(ws: WebSocket, line: str) -> list[str]:
    """The lines before ``line``, once ``line`` came."""
    before = []
    while (message := await recv(ws)) != line:
        before.append(message)
    return before


async def close_code(ws: WebSocket) -> int | None:
    """Read on until the server closes, and until its TCP close; the code it closed with."""
    while await asyncio.wait_for(ws.recv(), STEP) is not None:
        pass
    await asyncio.wait_for(ws.wait_closed(), STEP)
    return ws.close_code


@pytest.mark.parametrize("demo", [["--hub", "pubsub"], ["--hub", "streams"]], indirect=True, ids=["pubsub", "streams"])
@bounded(60)
def test_every_line_reaches_all_50_clients_over_two_workers_once_in_order(demo: Supervisor) -> None:
    """The issue's test, through the demo: 50 clients over two workers, each says 5 things, all hear all 250."""
    chat_line = re.compile(r"^c(\d+): m(\d+)$")

    async def scenario() -> None:
        clients = []
        for i in range(CLIENTS):
            ws = await connect(f"ws://127.0.0.1:{demo.port}/ws?name=c{i}")
            # Its own "joined" came through Redis, so it is subscribed: it hears every line said from now on.
            await until(ws, f"c{i} joined")
            clients.append(ws)
        workers = {demo_worker_of(demo, f"c{i}") for i in range(CLIENTS)}
        assert workers == demo.children() and len(workers) == 2  # SO_REUSEPORT spread them over both

        async def speak(index: int, ws: WebSocket) -> None:
            for seq in range(PER_CLIENT):
                await ws.send(f"m{seq}")

        async def listen(ws: WebSocket) -> list[tuple[int, int]]:
            heard = []
            while len(heard) < CLIENTS * PER_CLIENT:
                match = chat_line.match(await recv(ws))  # others' joins may still be arriving: not chat lines
                if match:
                    heard.append((int(match[1]), int(match[2])))
            return heard

        listening = [asyncio.ensure_future(listen(ws)) for ws in clients]
        await asyncio.gather(*(speak(i, ws) for i, ws in enumerate(clients)))
        for heard in await asyncio.gather(*listening):
            assert len(set(heard)) == CLIENTS * PER_CLIENT  # every line, none twice
            for speaker in range(CLIENTS):
                assert [seq for who, seq in heard if who == speaker] == list(range(PER_CLIENT))

        # Nothing more: a line delivered twice would come now.
        async def quiet(ws: WebSocket) -> list[str]:
            extra = []
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    extra.append(await asyncio.wait_for(ws.recv(), 0.5))
            return [line for line in extra if isinstance(line, str) and chat_line.match(line)]

        assert await asyncio.gather(*(quiet(ws) for ws in clients[:5])) == [[]] * 5

        demo.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(close_code(ws) for ws in clients))
        assert codes == [1001] * CLIENTS

    run(scenario(), 50)
    assert demo.proc.wait(15) == 0
    assert b"Traceback" not in demo.log()


@pytest.mark.parametrize("demo", [["--history", "3"]], indirect=True)
@bounded(60)
def test_a_newcomer_on_either_worker_gets_the_last_lines_first(demo: Supervisor) -> None:
    """Streams, the default with --redis: what was said on one worker is a newcomer's history on the other."""

    async def scenario() -> None:
        async with connect(f"ws://127.0.0.1:{demo.port}/ws?name=old") as old:
            assert await until(old, "old joined") == []  # an empty room has no history
            said = ["old joined"]
            for word in ("one", "two", "three", "four"):
                await old.send(word)
                said.append(await recv(old))
            assert said[-1] == "old: four"
            home = demo_worker_of(demo, "old")
            seen: set[int] = set()
            for n in range(20):  # until a newcomer lands on each worker (about 2 tries for the other one)
                name = f"new{n}"
                async with connect(f"ws://127.0.0.1:{demo.port}/ws?name={name}") as newcomer:
                    assert await until(newcomer, f"{name} joined") == said[-3:]
                    seen.add(demo_worker_of(demo, name))
                # The old member heard both, and so will the next newcomer's history.
                assert await until(old, f"{name} joined") == []
                assert await until(old, f"{name} left") == []
                said += [f"{name} joined", f"{name} left"]
                if len(seen) == 2:
                    break
            assert seen == demo.children() and home in seen

    run(scenario(), 50)


@bounded(60)
def test_redis_out_of_reach_closes_the_newcomer_with_1011_and_logs_one_line(tmp_path: Path) -> None:
    """Each worker connects on its first join; without Redis that join fails alone, and a later one retries."""
    redis = RedisServer()  # a free port, nothing listening on it yet
    sup = Supervisor(tmp_path, demo_command("--redis", redis.url))
    try:

        async def refused() -> int | None:
            ws = await connect(f"ws://127.0.0.1:{sup.port}/ws?name=early")
            return await close_code(ws)

        assert run(refused()) == 1011
        errors = [line for line in sup.log().splitlines() if b" ERROR: " in line]
        assert len(errors) == 1, errors
        assert b"chat: the room is unavailable: Redis at " in errors[0] and b"unreachable" in errors[0]
        assert b"Traceback" not in sup.log(), sup.log().decode(errors="replace")[-3000:]

        redis.start()
        try:

            async def joined() -> list[str]:
                async with connect(f"ws://127.0.0.1:{sup.port}/ws?name=late") as ws:
                    return await until(ws, "late joined")

            assert run(joined()) == []
        finally:
            redis.kill()
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(15) == 0
        assert b"Traceback" not in sup.log(), sup.log().decode(errors="replace")[-3000:]
    finally:
        sup.stop()


class LateHistory(MemoryBackend):
    """The room's lines in memory, whose history answer is held until the test lets it go.

    It stands for a Redis reply that is on its way while members go on
    talking: the lines said meanwhile reach the newcomer before the history does.
    """

    def __init__(self) -> None:
        super().__init__(history=10)
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.answer.set()  # until the test holds it

    async def history(self, topic: str, count: int) -> list[Message]:
        lines = await super().history(topic, count)
        self.asked.set()
        await self.answer.wait()
        return lines


def test_the_lines_said_while_a_newcomer_reads_the_history_come_after_it() -> None:
    async def scenario() -> None:
        backend = LateHistory()
        server = build_server(ChatRoom(lambda: backend, history=10))
        await server.listen(0)
        try:
            base = f"ws://127.0.0.1:{server.port}/ws"
            async with connect(f"{base}?name=old") as old:
                await until(old, "old joined")
                await old.send("one")
                await until(old, "old: one")
                backend.asked.clear()
                backend.answer.clear()
                async with connect(f"{base}?name=new") as new:
                    await asyncio.wait_for(backend.asked.wait(), STEP)  # subscribed, its history on the way
                    await old.send("two")
                    await until(old, "old: two")  # written to every member, the newcomer's held
                    backend.answer.set()
                    assert await until(new, "new joined") == ["old joined", "old: one", "old: two"]
        finally:
            await server.close()

    run(scenario())
