"""wsstack: RFC 6455 WebSocket with RFC 7692 compression, a sans-IO core and C speedups.

The names here are the core's stable API; transports live in
``wsstack.asyncio`` and ``wsstack.sync``.
"""

from .connection import ClientConnection, Connection, ServerConnection, State
from .errors import (
    ConnectionClosed,
    HandshakeError,
    HTTPParseError,
    InternalError,
    InvalidHandshake,
    InvalidPayloadData,
    InvalidState,
    MessageTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from .events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    Event,
    HandshakeComplete,
    HandshakeFailed,
    LocalFailure,
    Ping,
    Pong,
    ProtocolFailure,
    RequestReceived,
    TextMessage,
)
from .frames import Frame, Opcode
from .http11 import Headers, Request, Response
from .options import HTTPLimits, Options

__version__ = "0.1.0"

__all__ = [
    "BinaryMessage",
    "ClientConnection",
    "CloseReceived",
    "Connection",
    "ConnectionClosed",
    "ConnectionLost",
    "Event",
    "Frame",
    "HTTPLimits",
    "HTTPParseError",
    "HandshakeComplete",
    "HandshakeError",
    "HandshakeFailed",
    "Headers",
    "InternalError",
    "InvalidHandshake",
    "InvalidPayloadData",
    "InvalidState",
    "LocalFailure",
    "MessageTooBig",
    "Opcode",
    "Options",
    "Ping",
    "Pong",
    "ProtocolError",
    "ProxyError",
    "ProtocolFailure",
    "Request",
    "RequestReceived",
    "Response",
    "ServerConnection",
    "State",
    "TextMessage",
    "WebSocketError",
]
