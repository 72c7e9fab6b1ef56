"""What the hub's backends share and that touches no I/O: the message envelope and the retry schedule.

A message crosses Redis as one byte string: a kind byte (``t`` for text,
``b`` for binary) and the payload, so that a text message arrives as
``str`` and a binary one as ``bytes`` in every process, whichever backend
carried it. A topic's Redis key (a pub/sub channel or a stream) is the
backend's prefix followed by the topic's name.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..session import Message

__all__ = ["encode_envelope", "decode_envelope", "check_message", "Backoff", "DEFAULT_BACKOFF"]

_TEXT, _BINARY = b"t", b"b"


def check_message(message: object) -> Message:
    """The message as the hub carries it (``str`` or ``bytes``); ``TypeError`` for anything else."""
    if isinstance(message, (str, bytes)):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"publish() takes str or a bytes-like object, not {type(message).__name__}")


def encode_envelope(message: Message) -> bytes:
    """One message as one byte string: its kind, then its payload."""
    if isinstance(message, str):
        return _TEXT + message.encode("utf-8")
    return _BINARY + message


def decode_envelope(data: bytes) -> Message:
    """The message ``encode_envelope`` made; ``ValueError`` for bytes it could not have made."""
    kind = data[:1]
    if kind == _TEXT:
        return data[1:].decode("utf-8")
    if kind == _BINARY:
        return data[1:]
    raise ValueError(f"not a hub envelope (kind {kind!r})")


@dataclass(frozen=True)
class Backoff:
    """How long to wait before each new attempt to reach Redis: exponential, capped, with jitter.

    Attempt ``n`` (from 0) waits ``min(maximum, initial * factor**n)``
    scaled by a random factor in ``[1 - jitter, 1]``, so that workers that
    lost Redis together do not all come back in the same millisecond.
    """

    initial: float = 0.05
    maximum: float = 2.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"Backoff: initial must be > 0 and <= maximum, got {self.initial} and {self.maximum}")
        if self.factor < 1:
            raise ValueError(f"Backoff: factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff: jitter must be within [0, 1], got {self.jitter}")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        # Capped before the power overflows a float: the cap is reached long before.
        base = self.maximum if attempt >= 64 else min(self.maximum, self.initial * self.factor**attempt)
        return base * (1 - self.jitter * rand())


#: The Redis backends' schedule: 50 ms, doubling, at most 2 s between attempts.
DEFAULT_BACKOFF = Backoff()
