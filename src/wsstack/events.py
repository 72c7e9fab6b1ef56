"""What the sans-IO core reports: what the peer sent, and how the connection ended.

The rule it keeps: each way a connection can end has its own event, saying
whose doing it was: ``CloseReceived`` (the peer closed), ``ProtocolFailure``
(the peer broke the protocol), ``LocalFailure`` (this side gave up:
``fail()``), ``ConnectionLost`` (the stream ended without a close), and
``HandshakeFailed`` before the connection opened. No event follows one of
them.

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
    "LocalFailure",
    "ConnectionLost",
]


@dataclass(slots=True)
class RequestReceived:
    """Server side: a complete upgrade (or plain HTTP) request to route, accept or reject."""

    request: Request


@dataclass(slots=True)
class HandshakeComplete:
    """Client side: the server's 101 checked out and the connection is open.

    The server reports no such event: its connection opens inside ``accept()``.
    """

    subprotocol: str | None
    extensions: tuple[str, ...]
    response: Response | None = None


@dataclass(slots=True)
class HandshakeFailed:
    """The opening handshake failed and the connection is over.

    Client side: the server's answer did not parse, was not a valid upgrade,
    or never came (EOF); ``response`` is the answer when one parsed. Server
    side: the request head did not parse or broke a limit; the error
    response (``error.status``) is queued.
    """

    error: HandshakeError
    response: Response | None = None


@dataclass(slots=True)
class TextMessage:
    """A whole text message, its UTF-8 already checked."""

    data: str


@dataclass(slots=True)
class BinaryMessage:
    """A whole binary message, decompressed where an extension applies."""

    data: bytes


@dataclass(slots=True)
class Ping:
    """The peer pinged; with ``Options.auto_pong`` the pong is queued already (while paused, the latest only)."""

    data: bytes


@dataclass(slots=True)
class Pong:
    """The peer's pong: an answer to one of our pings, or unsolicited (RFC 6455 §5.5.3)."""

    data: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer sent a close frame; ``code`` is 1005 when it carried no code."""

    code: int
    reason: str


@dataclass(slots=True)
class ProtocolFailure:
    """The peer broke the protocol; a close frame with ``error.close_code`` is queued (or held: ``hold_failures``)."""

    error: ProtocolError

    @property
    def code(self) -> int:
        """The close code the failure sends."""
        return self.error.close_code


@dataclass(slots=True)
class LocalFailure:
    """This side failed the connection (``fail()``: a heartbeat timeout, an internal error).

    The close frame with ``code`` and ``reason`` is queued; the peer's answer is not awaited.
    """

    code: int
    reason: str


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
    | LocalFailure
    | ConnectionLost
    | Frame
)
