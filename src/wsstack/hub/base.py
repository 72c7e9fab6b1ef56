"""What a hub backend is, and the error it raises when the shared medium is out of reach.

A backend carries messages between the processes of one application;
the hub keeps the local topics and calls the backend for what crosses
processes. A backend calls ``deliver(topic, message)`` on the hub's event
loop for every message that reaches this process, its own included when
it routes those through the shared medium (both Redis backends do, so that
every process sees one order per publisher: the order Redis saw).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import WebSocketError
from ..session import Message

__all__ = ["Deliver", "Backend", "HubUnavailable"]

Deliver = Callable[[str, Message], object]


class HubUnavailable(WebSocketError):
    """The backend cannot reach Redis (at start, or for a publish while the connection is down).

    ``local_receivers`` tells, for a failed ``publish``, to how many
    connections of this process the message was written anyway (see the
    hub's rule); ``None`` when the error is not about a publish.
    """

    def __init__(self, message: str, local_receivers: int | None = None) -> None:
        super().__init__(message)
        self.local_receivers = local_receivers


class Backend(Protocol):
    """The cross-process half of a hub."""

    @property
    def delivers_own(self) -> bool:
        """Whether a message published here comes back through ``deliver`` (``False``: the hub delivers it)."""
        ...

    async def start(self, deliver: Deliver) -> None:
        """Connect (``HubUnavailable`` when that fails for good) and begin calling ``deliver``."""
        ...

    async def join(self, topic: str) -> None:
        """Receive ``topic``'s messages from now on; returns once that holds."""
        ...

    async def leave(self, topic: str) -> None:
        """Stop receiving ``topic``'s messages (the last local subscriber left); never raises for a lost Redis.

        A backend that lost Redis simply does not subscribe to ``topic``
        again when it reconnects.
        """
        ...

    async def publish(self, topic: str, message: Message) -> None:
        """Hand ``message`` to every process; ``HubUnavailable`` when it could not."""
        ...

    async def history(self, topic: str, count: int) -> list[Message]:
        """The last ``count`` messages of ``topic``, oldest first."""
        ...

    async def close(self) -> None:
        """Stop delivering and drop the connections."""
        ...
