"""The future that ``recv()`` waits on, which can resume its task at once.

With an ``asyncio.Future``, a message that arrives for a waiting
``recv()`` resumes the handler one loop iteration later: ``set_result``
only schedules the task's wake-up, and the loop polls the selector again
before running it. On a round trip of small messages that iteration and
its poll cost about as much as everything wsstack does with the message.

asyncio documents that a task can wait on any future-like object (one with
``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback``, ``result``
and ``cancel``; see ``asyncio.isfuture``). This is one, and ``wake(eager=True)``
runs the task's wake-up callback directly instead of scheduling it, so the
handler resumes inside ``data_received``. That is only done where no other
task is running (the transport's callbacks, never from inside a task), and
a waiter that is cancelled or woken from anywhere else behaves exactly like
an ``asyncio.Future``: its callbacks go through ``loop.call_soon``.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Callable, Generator

__all__ = ["Waiter"]

_PENDING, _DONE, _CANCELLED = 0, 1, 2

Callback = Callable[["Waiter"], object]


class Waiter:
    """A future-like object without a result, resolved by ``wake`` or ``cancel``."""

    __slots__ = ("_loop", "_state", "_callbacks", "_asyncio_future_blocking")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._state = _PENDING
        # Usually exactly one: the wake-up of the task in recv().
        self._callbacks: list[tuple[Callback, contextvars.Context]] = []
        # Read and written by asyncio.Task: True while a task yields this to the loop.
        self._asyncio_future_blocking = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> None:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the waiter has not been woken")

    def exception(self) -> BaseException | None:
        self.result()
        return None

    def add_done_callback(self, fn: Callback, *, context: contextvars.Context | None = None) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self._state != _PENDING:
            self._loop.call_soon(fn, self, context=context)
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callback) -> int:
        kept = [(f, c) for f, c in self._callbacks if f != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def cancel(self, msg: Any | None = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._schedule_callbacks()
        return True

    def wake(self, eager: bool) -> None:
        """Resolve the waiter; with ``eager``, run its callbacks now (only where no task is running)."""
        if self._state != _PENDING:
            return
        self._state = _DONE
        if eager and asyncio.current_task(self._loop) is None:
            callbacks, self._callbacks = self._callbacks, []
            for fn, context in callbacks:
                context.run(fn, self)
        else:
            self._schedule_callbacks()

    def _schedule_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            self._loop.call_soon(fn, self, context=context)

    def __await__(self) -> Generator[Waiter, None, None]:
        if self._state == _PENDING:
            self._asyncio_future_blocking = True
            yield self
        self.result()

    __iter__ = __await__
