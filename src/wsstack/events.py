"""What the sans-IO core reports after it has read bytes.

Events are small slotted objects (not frozen: a frozen dataclass costs
several times more to build, and the core builds one per message) so a
transport can queue them cheaply and match on them with ``match``/``isinstance``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import HandshakeError, ProtocolError
from .frames import Frame
from .http11 import Request, Response

__all__ = [
    "Event",
    "RequestReceived",
    "HandshakeComplete",
    "HandshakeFailed",
    "TextMessage",
    "BinaryMessage",
    "Ping",
    "Pong",
    "CloseReceived",
    "ProtocolFailure",
    "ConnectionLost",
]


@dataclass(slots=True)
class RequestReceived:
    """Server side: a complete upgrade (or plain HTTP) request to route, accept or reject."""

    request: Request


@dataclass(slots=True)
class HandshakeComplete:
    """The connection is open: the 101 was sent (server) or accepted (client)."""

    subprotocol: str | None
    extensions: tuple[str, ...]
    response: Response | None = None


@dataclass(slots=True)
class HandshakeFailed:
    """Client side: the server's answer was not a valid upgrade; the connection is over."""

    error: HandshakeError
    response: Response | None = None


@dataclass(slots=True)
class TextMessage:
    data: str


@dataclass(slots=True)
class BinaryMessage:
    data: bytes


@dataclass(slots=True)
class Ping:
    data: bytes


@dataclass(slots=True)
class Pong:
    data: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer sent a close frame; ``code`` is 1005 when it carried no code."""

    code: int
    reason: str


@dataclass(slots=True)
class ProtocolFailure:
    """The peer broke the protocol; a close frame with ``error.close_code`` is queued."""

    error: ProtocolError

    @property
    def code(self) -> int:
        return self.error.close_code


@dataclass(slots=True)
class ConnectionLost:
    """The stream ended before the closing handshake finished (close code 1006)."""


Event = (
    RequestReceived
    | HandshakeComplete
    | HandshakeFailed
    | TextMessage
    | BinaryMessage
    | Ping
    | Pong
    | CloseReceived
    | ProtocolFailure
    | ConnectionLost
    | Frame
)
