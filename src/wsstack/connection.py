"""The sans-IO connection: bytes in, events and bytes out.

A connection is three parts, each in its own module with its own rule:
``reader.py`` (frames in, events out), ``writer.py`` (calls in, frames out)
and ``state.py`` (the states, and the table of every move between them).
This module joins them and holds what needs all three: the closing
handshake and failing the connection (RFC 6455 §7), the held failure, and
each side's opening handshake (``ServerConnection``, ``ClientConnection``,
which differ only there and in masking).

The reader and writer are classes that ``Connection`` inherits, so their
methods run on the connection itself. As separate objects, the
receive-and-reply cycle would pay a delegating call for ``receive_data``,
``send_text`` and ``data_to_send`` (about 20 ns each, some 6% of its 1 us),
and an idle connection would cost three objects instead of one.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import handshake
from .errors import HandshakeError, InvalidHandshake, ProtocolError, fit_close_reason
from .events import (
    CloseReceived,
    ConnectionLost,
    Event,
    HandshakeComplete,
    HandshakeFailed,
    LocalFailure,
    ProtocolFailure,
    RequestReceived,
)
from .extensions import ClientExtensionFactory, Extension, ServerExtensionFactory
from .extensions.defaults import client_extension_factories, server_extension_factories
from .frames import FIN, Frame, Opcode, build_close, parse_close
from .handshake import ExtensionHeader
from .http11 import Request, RequestParser, Response, ResponseParser, serialize_request, serialize_response
from .options import Options
from .reader import READER_SLOTS, Reader
from .state import State, Trigger, next_state
from .writer import WRITER_SLOTS, Writer

__all__ = ["State", "Connection", "ServerConnection", "ClientConnection"]

_FIN_CLOSE = FIN | Opcode.CLOSE


class Connection(Reader, Writer):
    """State shared by both sides. Use ``ServerConnection`` or ``ClientConnection``.

    After ``receive_data`` call ``events()`` for what arrived and
    ``data_to_send()`` for what to write. When ``state`` is ``CLOSED`` the
    transport closes the TCP connection: a server at once, a client after
    giving the server a moment to close first (RFC 6455 §7.1.1).
    """

    # Slots: a server holds one of these per connection, idle ones included.
    __slots__ = (
        "options",
        "state",
        "subprotocol",
        "extensions",
        "frame_mode",
        "close_code",
        "close_reason",
        "close_sent",
        "close_received",
        "hold_failures",
        "_events",
        "_held_failure",
        *READER_SLOTS,
        *WRITER_SLOTS,
    )

    is_client: bool = False

    def __init__(self, options: Options | None = None, *, state: State = State.CONNECTING) -> None:
        if state is not State.CONNECTING and state is not State.OPEN:
            # The one way around the transition table: starting at its beginning, or past the handshake.
            raise ValueError(f"a connection starts CONNECTING or OPEN, not {state.name}")
        self.options = options if options is not None else Options()
        self.state = state
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        #: Deliver each frame as a ``Frame`` event instead of whole messages.
        self.frame_mode = False
        #: Close code and reason once known: the peer's, ours when we failed the connection, 1006 when lost.
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_sent = False
        self.close_received = False
        #: When the peer breaks the protocol, keep the close frame back until ``release_held_failure()``
        #: so replies to the messages that came before the error go out first.
        self.hold_failures = False
        self._held_failure: ProtocolError | None = None
        self._events: list[Event] = []
        self._init_reader()
        self._init_writer()

    def events(self) -> list[Event]:
        """Events since the last call, oldest first."""
        events = self._events
        self._events = []
        return events

    # --------------------------------------------------------------- closing

    def close(self, code: int | None = 1000, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2); nothing more can be sent, and frames are read until the peer's close.

        Once closing or closed this does nothing; before the opening handshake
        completes it raises ``InvalidState``. ``code=None`` sends a close
        frame without a code (the peer then reports 1005).
        """
        payload = build_close(code, reason)
        if self._held_failure is not None:
            self.release_held_failure()
            return
        state = self.state
        target = next_state(state, Trigger.SEND_CLOSE)
        if target is state:
            return  # a close frame is out already, or the connection is over
        self._write_frame(_FIN_CLOSE, payload)
        self.close_sent = True
        self.state = target
        self.close_code, self.close_reason = (1005 if code is None else code), reason

    def fail(self, code: int = 1011, reason: str = "") -> None:
        """Fail the connection from this side (a timeout, an internal error): close frame, then closed.

        Unlike ``close`` it does not wait for the peer's answer; the transport
        drops the TCP connection once the close frame is written. Reports
        ``LocalFailure``; a held failure of the peer's is released instead,
        with its own close code. The reason is cut to fit a close frame.
        """
        if self._held_failure is not None:
            self.release_held_failure()
            return
        if not isinstance(code, int):
            raise TypeError(f"fail() takes an int close code, not {type(code).__name__}")
        reason = fit_close_reason(reason)
        build_close(code, reason)  # ValueError for a code that may not be sent, before anything changes
        state = self.state
        if next_state(state, Trigger.FAIL) is state:
            return  # closed already
        self._events.append(LocalFailure(code, reason))
        self._close_now(Trigger.FAIL, code, reason)

    @property
    def held_failure(self) -> ProtocolError | None:
        """The peer's protocol error whose close frame waits for ``release_held_failure()`` (see ``hold_failures``)."""
        return self._held_failure

    def release_held_failure(self) -> None:
        """Send the close frame of the held protocol failure and close the connection."""
        error = self._held_failure
        if error is None:
            return
        self._held_failure = None
        self._close_now(Trigger.PROTOCOL_ERROR, error.close_code, error.reason)

    # ------------------------------------------------------------- internals

    def _open(self, trigger: Trigger, subprotocol: str | None, extensions: list[Extension]) -> None:
        self.state = next_state(self.state, trigger)
        self.subprotocol = subprotocol
        self.extensions = extensions
        self._configure_reader()

    def _close_now(self, trigger: Trigger, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a close frame unless one went out, then stop reading."""
        self.state = next_state(self.state, trigger)
        if not self.close_sent:
            self._write_frame(_FIN_CLOSE, build_close(code, reason))
            self.close_sent = True
        self.close_code, self.close_reason = code, reason
        self._buf.clear()

    def _fail(self, error: ProtocolError) -> None:
        """The peer broke the protocol: report it, then close now, or hold the close back (``hold_failures``)."""
        self._events.append(ProtocolFailure(error))
        if self.hold_failures and self.state is State.OPEN:
            self._held_failure = error
            self._buf.clear()
            return
        self._close_now(Trigger.PROTOCOL_ERROR, error.close_code, error.reason)

    def _receive_close(self, payload: bytes) -> None:
        """The peer's close frame: echo it unless ours went out first (§5.5.1), then closed.

        The answer repeats the peer's code and its reason, as websockets and
        Node's ``ws`` do, so that the side that closed sees its own reason
        come back (a browser shows what it gets in the ``close`` event). The
        payload was just checked by ``parse_close``: a valid code, a UTF-8
        reason, 125 bytes at most, so it is sendable as it is. In frame mode
        the frame is delivered only after that check, like a data frame
        after its UTF-8 check.
        """
        code, reason = parse_close(payload)
        self.state = next_state(self.state, Trigger.RECEIVE_CLOSE)
        self.close_received = True
        if not self.close_sent:
            self._write_frame(_FIN_CLOSE, payload)
            self.close_sent = True
        self.close_code, self.close_reason = code, reason
        if self.frame_mode:
            self._events.append(Frame(Opcode.CLOSE, payload))
        else:
            self._events.append(CloseReceived(code, reason))

    def _receive_eof(self) -> None:
        if self._held_failure is not None:
            self.release_held_failure()
            return
        state = self.state
        target = next_state(state, Trigger.EOF)
        if target is state:
            return
        self.state = target
        self.close_code, self.close_reason = 1006, ""
        self._buf.clear()
        if state < State.OPEN:
            self._handshake_eof()
        else:
            self._events.append(ConnectionLost())

    # -- the opening handshake, filled in by each side

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> None:
        """Read bytes that arrive before the connection is open (the HTTP head, on either side)."""
        raise NotImplementedError

    def _handshake_eof(self) -> None:
        """What a side reports when the stream ends during the opening handshake."""


class ServerConnection(Connection):
    """The server side: parses the upgrade request, then accepts or rejects it.

    A plain HTTP request (one the application answers with ``respond``) keeps
    the connection reading the next request when HTTP/1.1 keep-alive allows.
    """

    __slots__ = ("request", "_request_parser")

    is_client = False

    def __init__(self, options: Options | None = None, *, state: State = State.CONNECTING) -> None:
        super().__init__(options, state=state)
        #: The request waiting for an answer (REQUEST_RECEIVED), and the one accepted once OPEN.
        self.request: Request | None = None
        self._request_parser: RequestParser | None = RequestParser(self.options.http_limits)

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> None:
        parser = self._request_parser
        if parser is None:
            # REQUEST_RECEIVED: the request waits for accept() or respond(); keep what follows it.
            self._buf += data
            return
        try:
            request = parser.feed(bytes(data))
        except HandshakeError as exc:
            self.state = next_state(self.state, Trigger.HANDSHAKE_FAILED)
            self._out.append(
                serialize_response(
                    handshake.reject_response(exc.status, str(exc), [*exc.headers, ("Connection", "close")])
                )
            )
            self._events.append(HandshakeFailed(exc))
            return
        if request is None:
            return
        self.state = next_state(self.state, Trigger.REQUEST)
        self._request_parser = None
        self.request = request
        self._buf += parser.leftover
        self._events.append(RequestReceived(request))

    def accept(
        self,
        subprotocol: str | None = None,
        extensions: Sequence[ServerExtensionFactory] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        options: Options | None = None,
    ) -> None:
        """Answer the pending request with 101 and open the connection.

        Raises ``InvalidHandshake`` (with the HTTP status to answer) when the
        request is not a valid upgrade; the caller then calls ``respond``.
        ``options`` replaces the connection's options from here on (a route
        may upgrade with other limits or compression than the server's);
        ``subprotocol`` defaults to ``options.subprotocol`` when the client offered it.
        A ``subprotocol`` the client did not offer is the caller's mistake, not
        the client's: ``ValueError``, and the request stays pending (a server
        answers it with 500).
        """
        next_state(self.state, Trigger.ACCEPT)  # InvalidState unless a request waits
        request = self.request
        assert request is not None
        if options is not None:
            self.options = options
        handshake.check_request(request)
        offered = handshake.offered_subprotocols(request)
        if subprotocol is None and self.options.subprotocol in offered:
            subprotocol = self.options.subprotocol
        if subprotocol is not None and subprotocol not in offered:
            # RFC 6455 §4.2.2: the server's choice must be one of the client's values.
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client (offered: {offered})")
        factories = server_extension_factories(self.options) if extensions is None else extensions
        accepted, answer = self._negotiate_extensions(request, factories)
        response = handshake.accept_response(
            request, subprotocol, handshake.format_extensions(answer) if answer else None, headers
        )
        self._out.append(serialize_response(response))
        self._open(Trigger.ACCEPT, subprotocol, accepted)
        if self._buf:
            early = bytes(self._buf)
            self._buf.clear()
            self.receive_data(early)

    @staticmethod
    def _negotiate_extensions(
        request: Request, factories: Sequence[ServerExtensionFactory]
    ) -> tuple[list[Extension], list[ExtensionHeader]]:
        """The first acceptable offer of each extension, in the client's order, without two claiming one RSV bit."""
        accepted: list[Extension] = []
        answer: list[ExtensionHeader] = []
        if not factories:
            return accepted, answer
        offers = handshake.parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
        rsv_used = 0
        for name, params in offers:
            if any(name == done for done, _ in answer):
                continue
            for factory in factories:
                if factory.name != name:
                    continue
                result = factory.accept(params)
                if result is None:
                    continue
                response_params, extension = result
                if extension.rsv_bits & rsv_used:
                    continue
                rsv_used |= extension.rsv_bits
                accepted.append(extension)
                answer.append((name, response_params))
                break
        return accepted, answer

    def respond(self, response: Response, keep_alive: bool | None = None) -> None:
        """Answer the pending request with a plain HTTP response (a rejection or a page).

        With keep-alive (HTTP/1.1 without ``Connection: close``, the default)
        the connection goes on to read the next request; otherwise it is closed.
        """
        request = self.request
        if keep_alive is None:
            keep_alive = (
                request is not None
                and request.version == "HTTP/1.1"
                and "close" not in (token.lower() for token in request.headers.get_tokens("Connection"))
            )
        target = next_state(self.state, Trigger.RESPOND_KEEP_ALIVE if keep_alive else Trigger.RESPOND_CLOSE)
        if not keep_alive and "Connection" not in response.headers:
            response.headers.add("Connection", "close")
        self._out.append(serialize_response(response))
        self.request = None
        self.state = target
        if not keep_alive:
            self._buf.clear()
            return
        self._request_parser = RequestParser(self.options.http_limits)
        pending = bytes(self._buf)
        self._buf.clear()
        if pending:
            self._receive_handshake(pending)

    def reject(self, status: int, body: bytes | str = b"", headers: Sequence[tuple[str, str]] = ()) -> None:
        """Refuse the pending request with an HTTP error and close."""
        self.respond(handshake.reject_response(status, body, headers), keep_alive=False)


class ClientConnection(Connection):
    """The client side: sends the upgrade request at once and checks the answer."""

    __slots__ = ("handshake", "response", "_response_parser", "_factories", "_error_body")

    is_client = True

    def __init__(
        self,
        url: str,
        options: Options | None = None,
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ClientExtensionFactory] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        origin: str | None = None,
    ) -> None:
        super().__init__(options)
        secure, host, port, resource = handshake.parse_ws_url(url)
        if not subprotocols and self.options.subprotocol is not None:
            subprotocols = (self.options.subprotocol,)
        self._factories = list(client_extension_factories(self.options) if extensions is None else extensions)
        offers = [(factory.name, params) for factory in self._factories for params in factory.offers()]
        self.handshake = handshake.ClientHandshake(
            host,
            port,
            resource,
            secure,
            subprotocols,
            handshake.format_extensions(offers) if offers else None,
            origin,
            headers,
        )
        #: The server's answer to the upgrade request, once it has arrived.
        self.response: Response | None = None
        self._response_parser = ResponseParser(self.options.http_limits)
        #: The body of a refusal that only the end of the stream delimits, while it is read.
        self._error_body: bytearray | None = None
        self._out.append(serialize_request(self.handshake.request()))

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> None:
        if self._error_body is not None:
            self._read_error_body(data)
            return
        try:
            response = self._response_parser.feed(bytes(data))
            if response is None:
                return
            self.response = response
            if response.status != 101 and _delimited_by_close(response):
                # RFC 9112 §6.3: without Content-Length or Transfer-Encoding the body runs to the end of the
                # stream; the refusal is reported once that came, or the bound is reached.
                self._error_body = bytearray()
                self._read_error_body(self._response_parser.leftover)
                return
            subprotocol, answered = self.handshake.check_response(response)
            extensions = self._accept_extensions(answered)
        except HandshakeError as exc:
            self.state = next_state(self.state, Trigger.HANDSHAKE_FAILED)
            self.close_code = 1006
            self._events.append(HandshakeFailed(exc, self.response))
            return
        self._open(Trigger.HANDSHAKE_COMPLETE, subprotocol, extensions)
        self._events.append(HandshakeComplete(subprotocol, tuple(e.name for e in extensions), response))
        leftover = self._response_parser.leftover
        if leftover:
            self.receive_data(leftover)

    def _accept_extensions(self, answered: list[ExtensionHeader]) -> list[Extension]:
        """The extensions the server agreed to; each must answer one of our offers (RFC 6455 §9.1)."""
        extensions: list[Extension] = []
        unused = list(self._factories)
        for name, params in answered:
            factory = next((f for f in unused if f.name == name), None)
            if factory is None:
                raise InvalidHandshake(f"server answered with extension {name!r} that was not offered")
            unused.remove(factory)
            extensions.append(factory.accept(params))
        return extensions

    def _read_error_body(self, data: bytes | bytearray | memoryview) -> None:
        body = self._error_body
        assert body is not None
        body += data
        limit = self.options.http_limits.max_body_size
        if len(body) >= limit:
            del body[limit:]
            self._refused()

    def _refused(self) -> None:
        """Report the refusal whose body was read to the end of the stream (or to the bound)."""
        response = self.response
        assert response is not None and self._error_body is not None
        response.body = bytes(self._error_body)
        self._error_body = None
        try:
            self.handshake.check_response(response)
        except HandshakeError as exc:
            if self.state is State.CONNECTING:
                self.state = next_state(self.state, Trigger.HANDSHAKE_FAILED)
            self.close_code = 1006
            self._events.append(HandshakeFailed(exc, response))

    def _handshake_eof(self) -> None:
        if self._error_body is not None:
            self._refused()
            return
        self._events.append(HandshakeFailed(InvalidHandshake("connection closed during the opening handshake")))


def _delimited_by_close(response: Response) -> bool:
    """Whether the response's body ends only with the stream (RFC 9112 §6.3, rule 8)."""
    headers = response.headers
    bodiless = response.status < 200 or response.status in (204, 304)
    return not bodiless and "Content-Length" not in headers and "Transfer-Encoding" not in headers
