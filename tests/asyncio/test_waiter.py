"""The recv() waiter: a future-like object that resumes its task inside the transport's callback.

asyncio.Task must treat it as it treats a Future (cancellation, timeouts,
context variables), and the eager path must only run where no task is.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from wsstack.asyncio import Server, connect
from wsstack.waiter import Waiter

REQUEST = contextvars.ContextVar("REQUEST", default="unset")


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_eager_wake_resumes_the_task_inside_the_callback() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop=loop)
        steps: list[str] = []

        async def waiting() -> None:
            await waiter
            steps.append("resumed")

        task = loop.create_task(waiting())
        await asyncio.sleep(0)  # the task is now blocked on the waiter
        seen: list[list[str]] = []

        def transport_callback() -> None:
            waiter.wake(eager=True)
            seen.append(list(steps))  # before this callback returns

        loop.call_soon(transport_callback)
        await task
        assert seen == [["resumed"]]
        assert waiter.done() and not waiter.cancelled()

    run(main())


def test_wake_from_inside_a_task_is_scheduled_like_a_future() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop=loop)
        steps: list[str] = []

        async def waiting() -> None:
            await waiter
            steps.append("resumed")

        task = loop.create_task(waiting())
        await asyncio.sleep(0)
        waiter.wake(eager=True)  # this coroutine is itself a task: no nested step
        assert steps == []
        await task
        assert steps == ["resumed"]

    run(main())


def test_plain_wake_is_scheduled() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop=loop)
        task = loop.create_task(asyncio.wait_for(_await(waiter), 5))
        await asyncio.sleep(0)
        seen: list[bool] = []
        loop.call_soon(lambda: (waiter.wake(eager=False), seen.append(task.done())))
        await task
        assert seen == [False]

    run(main())


async def _await(waiter: Waiter) -> None:
    await waiter


def test_context_variables_survive_an_eager_resume() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop=loop)

        async def waiting() -> str:
            REQUEST.set("inside the task")
            await waiter
            return REQUEST.get()

        task = loop.create_task(waiting())
        await asyncio.sleep(0)
        loop.call_soon(waiter.wake, True)
        assert await task == "inside the task"
        assert REQUEST.get() == "unset"

    run(main())


def test_cancelling_the_task_cancels_the_waiter() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop=loop)
        task = loop.create_task(_await(waiter))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiter.cancelled()
        waiter.wake(eager=True)  # too late: nothing happens
        assert waiter.cancelled()
        with pytest.raises(asyncio.CancelledError):
            waiter.result()

    run(main())


def test_future_protocol_details() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop=loop)
        assert asyncio.isfuture(waiter)
        assert waiter.get_loop() is loop
        with pytest.raises(asyncio.InvalidStateError):
            waiter.result()
        calls: list[Waiter] = []
        waiter.add_done_callback(calls.append)
        waiter.add_done_callback(print)
        assert waiter.remove_done_callback(print) == 1
        waiter.wake(eager=False)
        assert waiter.exception() is None and waiter.cancel() is False
        await asyncio.sleep(0)
        assert calls == [waiter]
        # A callback added once it is done runs on the next iteration, as with a Future.
        waiter.add_done_callback(calls.append)
        assert len(calls) == 1
        await asyncio.sleep(0)
        assert calls == [waiter, waiter]
        await waiter  # done: returns at once

    run(main())


def test_recv_with_a_timeout_then_the_next_message() -> None:
    async def main() -> None:
        server = Server()
        release = asyncio.Event()

        @server.get("/")
        async def slow(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            await release.wait()
            await ws.send("late")
            await ws.wait_closed()

        await server.listen(0)
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.05)
            release.set()
            assert await asyncio.wait_for(ws.recv(), 5) == "late"
        await server.close()

    run(main())


def test_handler_resumes_in_the_read_callback_and_echoes_in_order() -> None:
    """End to end: many messages, some arriving while the handler is busy, come back in order."""

    async def main() -> None:
        server = Server()

        @server.get("/")
        async def echo(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            count = 0
            while (message := await ws.recv()) is not None:
                count += 1
                if count % 7 == 0:
                    await asyncio.sleep(0.001)  # lets messages pile up in the queue
                await ws.send(message)

        await server.listen(0)
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            for burst in range(20):
                sent = [f"{burst}-{i}" if i % 2 else f"{burst}-{i}".encode() for i in range(10)]
                for message in sent:
                    await ws.send(message)
                assert [await ws.recv() for _ in sent] == sent
        await server.close()

    run(main())
