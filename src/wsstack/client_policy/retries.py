"""When a reconnecting client tries again, and how long it waits first.

The delays grow exponentially from ``initial`` by ``factor`` up to
``max_delay``, and each is shortened by a random part of up to ``jitter`` of
itself: when a server restarts, its thousands of clients then come back
spread over time instead of in one wave. With the defaults (jitter 0.5,
factor 2) every delay is at least as long as the one before it.

Which failures are worth another attempt: the network's (refused, reset,
unreachable, timed out, lost during the handshake) and a server's 5xx
answer, which says it may work later. A 4xx answer says this request will
not work (wrong path, no permission, bad credentials) and a malformed answer
says this is no WebSocket server: trying again would only load the server.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConnectionClosed, HandshakeError, HTTPParseError

__all__ = ["Backoff", "Reconnection", "should_retry"]


@dataclass(frozen=True)
class Backoff:
    """The delays between connection attempts, in seconds."""

    initial: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    #: The fraction of each delay that is random: a delay ``d`` becomes one in ``[d * (1 - jitter), d]``.
    jitter: float = 0.5
    #: How long a connection must have stayed open for the failures before it to be forgotten.
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        for name in ("initial", "factor", "max_delay", "jitter", "reset_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Backoff.{name} must be a finite number, not {value!r}")
        if self.initial < 0:
            raise ValueError(f"Backoff.initial must be >= 0, not {self.initial!r}")
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be >= 1, not {self.factor!r}")
        if self.max_delay < self.initial:
            raise ValueError(f"Backoff.max_delay ({self.max_delay!r}) must be >= initial ({self.initial!r})")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff.jitter must be in [0, 1], not {self.jitter!r}")
        if self.reset_after < 0:
            raise ValueError(f"Backoff.reset_after must be >= 0, not {self.reset_after!r}")

    def delay(self, attempt: int, unit: float) -> float:
        """The wait before attempt ``attempt + 1``; ``unit`` in [0, 1) is the random draw."""
        try:
            base = min(self.max_delay, self.initial * self.factor**attempt)
        except OverflowError:
            base = self.max_delay
        return base * (1 - self.jitter * unit)


def should_retry(error: BaseException) -> bool:
    """The default ``retry_on``: network failures and 5xx answers retry, anything else ends the iteration."""
    if isinstance(error, HandshakeError):
        # A proxy's 502/503 is the network's failure as much as the server's.
        # An answer that did not parse has the parser's status (505 for HTTP/2.0), not one a peer sent.
        return 500 <= error.status <= 599 and not isinstance(error, HTTPParseError)
    return isinstance(error, (OSError, ConnectionClosed))


class Reconnection:
    """The state of one reconnecting loop: how many attempts in a row went wrong.

    The transport calls ``failed`` when an attempt raised (None: give up and
    raise it), ``opened`` when one succeeded, and ``lost`` when the
    connection it handed out has ended; ``failed`` and ``lost`` return the
    delay to sleep before the next attempt. A connection that ends sooner
    than ``Backoff.reset_after`` after it opened counts as one more failure:
    a server that accepts and drops at once sees the delays grow, one that
    served for a while is reconnected to after the shortest delay. Times are
    the transport's monotonic clock, passed in.
    """

    def __init__(
        self,
        backoff: Backoff,
        retry_on: Callable[[BaseException], bool] = should_retry,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.backoff = backoff
        self.retry_on = retry_on
        self._draw = draw
        self.attempt = 0
        self._opened_at: float | None = None

    def failed(self, error: BaseException) -> float | None:
        """The delay before trying again after ``error``, or None when it is not to be retried."""
        if not self.retry_on(error):
            return None
        return self._next()

    def opened(self, now: float) -> None:
        """An attempt succeeded at ``now``."""
        self._opened_at = now

    def lost(self, now: float) -> float:
        """The delay before reconnecting once the connection handed out has ended (noticed at ``now``)."""
        if self._opened_at is not None and now - self._opened_at >= self.backoff.reset_after:
            self.attempt = 0
        self._opened_at = None
        return self._next()

    def _next(self) -> float:
        delay = self.backoff.delay(self.attempt, self._draw())
        self.attempt += 1
        return delay
