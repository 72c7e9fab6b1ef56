"""The future that a receive waits on, which can resume its task at once.

It is shared by the two adapters that run on an event loop
(``wsstack.asyncio``'s ``recv()`` and ``wsstack.uvicorn``'s ASGI
``receive()``), and lives outside both so that neither imports the other.

With a plain ``asyncio.Future``, a message that arrives for a waiting
``recv()`` resumes the handler one loop iteration later: ``set_result``
only schedules the task's wake-up, and the loop polls the selector again
before running it. On a round trip of small messages that iteration and its
poll cost about as much as everything wsstack does with the message.

``Waiter`` is an ``asyncio.Future`` that holds back the wake-up callback of
the task awaiting it, so ``wake(eager=True)`` can run it directly and the
handler resumes inside ``data_received``. That is only done where no task
is running (the transport's callbacks); woken from anywhere else, or
cancelled, it schedules the callback through ``loop.call_soon`` exactly as
a Future would. Every other callback is left to the Future itself.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

__all__ = ["Waiter"]

Callback = Callable[[Any], object]


class Waiter(asyncio.Future):  # type: ignore[type-arg]
    """A Future resolved by ``wake()``; the first callback added while pending can run eagerly."""

    __slots__ = ("_wakeup",)

    def add_done_callback(self, fn: Callback, *, context: contextvars.Context | None = None) -> None:
        if self.done() or hasattr(self, "_wakeup"):
            super().add_done_callback(fn, context=context)
            return
        # The awaiting task's wake-up: asyncio.Task adds it when the task blocks here.
        self._wakeup = (fn, contextvars.copy_context() if context is None else context)

    def remove_done_callback(self, fn: Callback) -> int:
        removed = super().remove_done_callback(fn)
        wakeup = getattr(self, "_wakeup", None)
        if wakeup is not None and wakeup[0] == fn:
            del self._wakeup
            removed += 1
        return removed

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self._release(eager=False)
        return True

    def wake(self, eager: bool) -> None:
        """Resolve the waiter; with ``eager``, resume the waiting task now (if no task is running)."""
        if self.done():
            return
        self.set_result(None)
        self._release(eager)

    def _release(self, eager: bool) -> None:
        wakeup = getattr(self, "_wakeup", None)
        if wakeup is None:
            return
        del self._wakeup
        fn, context = wakeup
        loop = self.get_loop()
        if eager and asyncio.current_task(loop) is None:
            context.run(fn, self)
        else:
            loop.call_soon(fn, self, context=context)
