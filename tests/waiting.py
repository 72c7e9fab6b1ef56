"""Deadlines for tests: a body that must end in time, a condition that must come true in time.

A test that hangs stops the whole suite without saying where; one that
fails after a deadline names the test and the condition it waited for.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

__all__ = ["bounded", "wait_until", "wait_until_async"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., None])

#: How long one condition may take to come true, unless the caller says otherwise.
TIMEOUT = 10.0
#: How often a condition is looked at again.
POLL = 0.01


def bounded(seconds: float) -> Callable[[F], F]:
    """Fail the test if its body runs longer than ``seconds`` (the body's thread is left behind)."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            outcome: list[BaseException | None] = []

            def body() -> None:
                try:
                    test(*args, **kwargs)
                except BaseException as exc:
                    outcome.append(exc)
                else:
                    outcome.append(None)

            thread = threading.Thread(target=body, daemon=True, name=f"test-{test.__name__}")
            thread.start()
            thread.join(seconds)
            if not outcome:
                pytest.fail(f"{test.__name__} still running after {seconds} s")
            if outcome[0] is not None:
                raise outcome[0]

        return wrapper  # type: ignore[return-value]

    return decorate


def wait_until(condition: Callable[[], T], timeout: float = TIMEOUT, interval: float = POLL) -> T:
    """The first truthy value ``condition()`` returns; ``AssertionError`` once ``timeout`` seconds have passed.

    For conditions nothing signals (a file appearing, a count in another
    component, a port starting to accept): where an event, a future or a
    frame can be waited for, wait for it instead.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout} s: {_name(condition)}")
        time.sleep(interval)
    return value


async def wait_until_async(
    condition: Callable[[], Awaitable[T]], timeout: float = TIMEOUT, interval: float = POLL
) -> T:
    """``wait_until`` for a coroutine function, without blocking the event loop between looks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := await condition()):
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {timeout} s: {_name(condition)}")
        await asyncio.sleep(interval)
    return value


def _name(condition: Callable[..., object]) -> str:
    return getattr(condition, "__qualname__", repr(condition))
