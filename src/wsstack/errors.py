"""One exception hierarchy for everything wsstack raises.

Protocol errors carry the close code that goes on the wire, so the connection
can turn any violation into the right close frame without a lookup table, and
handshake errors carry the HTTP status a server answers with.
"""

from __future__ import annotations

__all__ = [
    "WebSocketError",
    "ProtocolError",
    "InvalidPayloadData",
    "MessageTooBig",
    "InternalError",
    "HandshakeError",
    "HTTPParseError",
    "InvalidHandshake",
    "ProxyError",
    "ConnectionClosed",
    "InvalidState",
]


class WebSocketError(Exception):
    """Base of every exception wsstack raises on purpose."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455 or RFC 7692; the connection is failed with ``close_code``."""

    default_close_code = 1002

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = self.default_close_code if close_code is None else close_code

    @property
    def reason(self) -> str:
        """The reason sent in the close frame: the message, cut to fit 123 bytes."""
        return fit_close_reason(str(self))


class InvalidPayloadData(ProtocolError):
    """Text that is not UTF-8, a corrupt compressed stream, a bad close reason."""

    default_close_code = 1007


class MessageTooBig(ProtocolError):
    """A frame, message or fragment count over the configured limits."""

    default_close_code = 1009


class InternalError(ProtocolError):
    """This side could not go on (a compressor failed); raised to the caller of the send."""

    default_close_code = 1011


class HandshakeError(WebSocketError):
    """The opening handshake failed; ``status`` is the HTTP answer a server gives.

    On the client, an error raised for the server's answer carries that
    answer: its ``status``, its ``headers`` and its ``body`` (bounded by
    ``HTTPLimits.max_body_size``), so a refusal can be told apart and shown.
    """

    default_status = 400

    def __init__(
        self,
        message: str,
        status: int | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = self.default_status if status is None else status
        self.headers: list[tuple[str, str]] = list(headers or ())
        self.body = body


class HTTPParseError(HandshakeError):
    """The bytes are not an acceptable HTTP/1.1 message head (or exceed a limit)."""


class InvalidHandshake(HandshakeError):
    """A well-formed HTTP message that is not a valid WebSocket upgrade or answer."""


class ProxyError(HandshakeError):
    """The proxy did not open a tunnel to the server; ``status``, ``headers``, ``body`` are its answer.

    A SOCKS proxy answers without HTTP: its refusal of our credentials is
    reported as 407 and its failure to reach the server as 502, the statuses
    an HTTP proxy would give, so one rule decides what to retry.
    """


class ConnectionClosed(WebSocketError):
    """Raised by a send or receive on a connection that is already closed."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class InvalidState(WebSocketError):
    """An API call that the connection's current state does not allow."""


def fit_close_reason(text: str) -> str:
    """``text`` cut (on a character boundary) to the 123 bytes a close frame has room for."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:123].decode("utf-8", "ignore")
