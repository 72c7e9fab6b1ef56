"""The sans-IO connection: bytes in, events and bytes out.

One state machine serves both sides; ``ServerConnection`` and
``ClientConnection`` differ only in the opening handshake and in masking.
The receive path hands each read to ``scan_frames`` (one C call per
``receive_data`` when the speedups are built), which returns every complete
frame's first header byte and unmasked payload, so Python does per-frame
work only for what it must decide: message assembly, UTF-8, limits,
control frames.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Sequence

from . import handshake
from .errors import (
    ConnectionClosed,
    HandshakeError,
    InternalError,
    InvalidHandshake,
    InvalidPayloadData,
    InvalidState,
    MessageTooBig,
    ProtocolError,
)
from .events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    Event,
    HandshakeComplete,
    HandshakeFailed,
    Ping,
    Pong,
    ProtocolFailure,
    RequestReceived,
    TextMessage,
)
from .extensions import ClientExtensionFactory, Extension, ServerExtensionFactory
from .extensions.defaults import client_extension_factories, server_extension_factories
from .frames import FIN, Frame, MaskKeys, Opcode, build_close, frame_header, parse_close
from .http11 import Request, RequestParser, Response, ResponseParser, serialize_request, serialize_response
from .options import Options
from .speedups import (
    ERR_CONTROL_FRAGMENTED,
    ERR_CONTROL_TOO_LONG,
    ERR_FRAME_TOO_BIG,
    ERR_LENGTH_HIGH_BIT,
    ERR_MASK_FORBIDDEN,
    ERR_MASK_REQUIRED,
    ERR_RESERVED_OPCODE,
    ERR_RSV,
    Utf8Validator,
    apply_mask,
    scan_frames,
    serialize_frame,
)

__all__ = ["State", "Connection", "ServerConnection", "ClientConnection"]

_TEXT = 0x1
_BINARY = 0x2
_CLOSE = 0x8
_PING = 0x9
_PONG = 0xA

# Above this size a server frame's payload is queued as its own buffer
# instead of being copied behind its header.
_JOIN_LIMIT = 4096


def _scan_error(code: int) -> ProtocolError:
    if code == ERR_RESERVED_OPCODE:
        return ProtocolError("reserved opcode")
    if code == ERR_RSV:
        return ProtocolError("reserved bit set without an extension that defines it")
    if code == ERR_CONTROL_FRAGMENTED:
        return ProtocolError("fragmented control frame")
    if code == ERR_CONTROL_TOO_LONG:
        return ProtocolError("control frame payload over 125 bytes")
    if code == ERR_LENGTH_HIGH_BIT:
        return ProtocolError("64-bit frame length with the most significant bit set")
    if code == ERR_FRAME_TOO_BIG:
        return MessageTooBig("frame exceeds the size limit")
    if code == ERR_MASK_REQUIRED:
        return ProtocolError("client frame is not masked")
    if code == ERR_MASK_FORBIDDEN:
        return ProtocolError("server frame is masked")
    return ProtocolError(f"invalid frame ({code})")


class State(enum.IntEnum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Connection:
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
        "_buf",
        "_events",
        "_out",
        "_mask_keys",
        "_allowed_rsv",
        "_max_frame_size",
        "_msg_opcode",
        "_msg_rsv",
        "_msg_parts",
        "_msg_size",
        "_msg_frames",
        "_utf8",
        "hold_failure_close",
        "_held_failure",
        "_prevalidated",
        "_pongs_paused",
        "_pending_pong",
    )

    is_client: bool = False

    def __init__(self, options: Options | None = None, *, state: State = State.CONNECTING) -> None:
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

        self._buf = bytearray()
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._mask_keys = MaskKeys() if self.is_client else None
        # What scan_frames checks besides the header's own rules; set by _configure_limits.
        self._allowed_rsv = 0
        self._max_frame_size: int | None = None

        # The data message being reassembled.
        self._msg_opcode = 0
        self._msg_rsv = 0
        self._msg_parts: list[bytes] = []
        self._msg_size = 0
        self._msg_frames = 0
        self._utf8 = Utf8Validator()
        #: Text bytes of the incomplete frame at the end of the buffer already validated.
        self._prevalidated = 0
        #: When the peer breaks the protocol, keep the close frame back until ``release_failure()``
        #: so replies to the messages that came before the error go out first.
        self.hold_failure_close = False
        self._held_failure: ProtocolError | None = None
        self._pongs_paused = False
        self._pending_pong: bytes | None = None
        self._configure_limits()

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the network; empty means the peer closed its side (EOF).

        Any buffer will do, and none is kept: a transport may reuse its read
        buffer as soon as this returns.
        """
        if not data:
            self._receive_eof()
            return
        if self.state is State.CLOSED or self._held_failure is not None:
            return
        if self.state is State.CONNECTING:
            self._receive_handshake(data)
            return
        if type(data) is memoryview and (data.itemsize != 1 or not data.c_contiguous):
            data = data.tobytes()  # offsets below count bytes
        buf = self._buf
        if buf:
            buf += data
            data = buf
        # Otherwise the read is scanned where it is, and only an incomplete
        # frame at its end is copied into the buffer.
        frames, consumed, error = scan_frames(data, 0, not self.is_client, self._allowed_rsv, self._max_frame_size)
        if frames:
            try:
                self._handle_frames(frames)
            except ProtocolError as exc:
                self._fail(exc)
                return
        if self.state is State.CLOSED:
            buf.clear()
            return
        if error:
            self._fail(_scan_error(error))
            return
        if data is buf:
            del buf[:consumed]
        elif consumed < len(data):
            buf += data[consumed:] if consumed else data
        if len(buf) > 1 and self._msg_rsv == 0:
            try:
                self._validate_partial_text(buf)
            except ProtocolError as exc:
                self._fail(exc)

    def events(self) -> list[Event]:
        """Events since the last call, oldest first."""
        events = self._events
        self._events = []
        return events

    # ----------------------------------------------------------------- output

    def data_to_send(self) -> bytes:
        """Bytes to write to the network, in order; empty when there is nothing."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def buffers_to_send(self) -> list[bytes]:
        """Like ``data_to_send`` but without joining, for ``writelines`` / ``sendmsg``."""
        out = self._out
        self._out = []
        return out

    def send_text(self, text: str, fragment_size: int | None = None) -> None:
        self._send_message(_TEXT, text.encode("utf-8"), fragment_size)

    def send_binary(self, data: bytes | bytearray | memoryview, fragment_size: int | None = None) -> None:
        if isinstance(data, str):
            raise TypeError("send_binary() takes bytes-like data, not str")
        self.send(data, fragment_size)

    def send(self, message: str | bytes | bytearray | memoryview, fragment_size: int | None = None) -> None:
        """``str`` goes out as a text message, anything bytes-like as binary."""
        if isinstance(message, str):
            first, payload = FIN | _TEXT, message.encode()
        else:
            first, payload = FIN | _BINARY, bytes(message)
        if (
            fragment_size is None
            and self.state is State.OPEN
            and not self.extensions
            and (len(payload) <= _JOIN_LIMIT or self._mask_keys is not None)
        ):
            # The usual message, without the general path's checks and calls.
            keys = self._mask_keys
            self._out.append(serialize_frame(first, payload, None if keys is None else keys.next()))
            return
        self._send_message(first & 0x0F, payload, fragment_size)

    def ping(self, data: bytes | str = b"") -> None:
        self._send_control(_PING, data)

    def pong(self, data: bytes | str = b"") -> None:
        self._send_control(_PONG, data)

    def close(self, code: int | None = 1000, reason: str = "") -> None:
        """Start (or, after a received close, finish) the closing handshake."""
        payload = build_close(code, reason)
        if self.state is State.CONNECTING:
            raise InvalidState("cannot close before the opening handshake completes")
        if self._held_failure is not None:
            self.release_failure()
            return
        if self.close_sent or self.state is State.CLOSED:
            return
        self._write_frame(FIN | _CLOSE, payload)
        self.close_sent = True
        if self.close_received:
            self.state = State.CLOSED
        else:
            self.state = State.CLOSING
            self.close_code, self.close_reason = (1005 if code is None else code), reason

    def fail(self, code: int = 1011, reason: str = "") -> None:
        """Fail the connection from this side (a timeout, an internal error): close frame, then closed.

        Unlike ``close`` it does not wait for the peer's answer; the transport
        drops the TCP connection once the close frame is written.
        """
        if self._held_failure is not None:
            self.release_failure()
            return
        if self.state is State.CLOSED:
            return
        self._fail(InternalError(reason, close_code=code), may_hold=False)

    def pause_pongs(self) -> None:
        """Stop answering pings at once while the transport cannot write.

        A peer that floods pings and never reads would otherwise pile pongs
        up without bound; meanwhile only the latest ping is remembered, and
        RFC 6455 §5.5.3 allows answering just that one.
        """
        self._pongs_paused = True

    def resume_pongs(self) -> None:
        """Answer the latest ping that arrived while pongs were paused."""
        self._pongs_paused = False
        payload = self._pending_pong
        if payload is not None:
            self._pending_pong = None
            if self.state is State.OPEN:
                self._write_frame(FIN | _PONG, payload)

    @property
    def failure_held(self) -> bool:
        """A protocol failure waits for ``release_failure()`` (see ``hold_failure_close``)."""
        return self._held_failure is not None

    def release_failure(self) -> None:
        """Send the close frame of a held protocol failure and close the connection."""
        error = self._held_failure
        if error is None:
            return
        self._held_failure = None
        self._fail(error, announce=False)

    # ------------------------------------------------------------ internals

    def _configure_limits(self) -> None:
        options = self.options
        limit = options.max_frame_size
        if limit is None and options.max_message_size is not None:
            limit = options.max_message_size
            if self.extensions:
                # Compressed data can be slightly larger than the message it encodes.
                limit += limit // 64 + 64
        self._max_frame_size = limit
        rsv = 0
        for extension in self.extensions:
            rsv |= extension.rsv_bits
        self._allowed_rsv = rsv

    def _open(self, subprotocol: str | None, extensions: list[Extension]) -> None:
        self.state = State.OPEN
        self.subprotocol = subprotocol
        self.extensions = extensions
        self._configure_limits()

    def _write_frame(self, first_byte: int, payload: bytes) -> None:
        if self._mask_keys is not None:
            self._out.append(serialize_frame(first_byte, payload, self._mask_keys.next()))
        elif len(payload) > _JOIN_LIMIT:
            self._out.append(frame_header(first_byte, len(payload)))
            self._out.append(payload)
        else:
            self._out.append(serialize_frame(first_byte, payload))

    def _check_can_send(self) -> None:
        if self.state is not State.OPEN:
            if self.state is State.CONNECTING:
                raise InvalidState("the opening handshake has not completed")
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)

    def _send_message(self, opcode: int, payload: bytes, fragment_size: int | None) -> None:
        self._check_can_send()
        rsv = 0
        for extension in self.extensions:
            bits, payload = extension.encode(payload)
            rsv |= bits
        if fragment_size is None or len(payload) <= fragment_size:
            self._write_frame(FIN | rsv | opcode, payload)
            return
        if fragment_size < 1:
            raise ValueError("fragment_size must be positive")
        view = memoryview(payload)
        last = len(payload) - fragment_size
        self._write_frame(rsv | opcode, bytes(view[:fragment_size]))
        pos = fragment_size
        while pos < last:
            self._write_frame(0, bytes(view[pos : pos + fragment_size]))
            pos += fragment_size
        self._write_frame(FIN, bytes(view[pos:]))

    def _send_control(self, opcode: int, data: bytes | str) -> None:
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(payload) > 125:
            raise ValueError("control frame payload over 125 bytes")
        self._check_can_send()
        self._write_frame(FIN | opcode, payload)

    def _receive_eof(self) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CONNECTING:
            self._handshake_eof()
            return
        if self._held_failure is not None:
            self.release_failure()
            return
        self.state = State.CLOSED
        self.close_code, self.close_reason = 1006, ""
        self._buf.clear()
        self._events.append(ConnectionLost())

    def _fail(self, error: ProtocolError, announce: bool = True, may_hold: bool = True) -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a close frame once, then stop reading."""
        if announce:
            self._events.append(ProtocolFailure(error))
            if may_hold and self.hold_failure_close and not self.close_sent and self.state is State.OPEN:
                self._held_failure = error
                self._buf.clear()
                return
        if not self.close_sent:
            self._write_frame(FIN | _CLOSE, build_close(error.close_code, error.reason))
            self.close_sent = True
        self.state = State.CLOSED
        self.close_code, self.close_reason = error.close_code, error.reason
        self._buf.clear()

    # -- frames

    def _validate_partial_text(self, buf: bytearray) -> None:
        """Validate what has arrived of an incomplete text frame, so invalid UTF-8 fails at once.

        The scanner leaves incomplete frames masked in the buffer; this unmasks
        a copy of the new bytes only. The scanner already accepted the header.
        """
        first = buf[0]
        opcode = first & 0x0F
        if opcode == _TEXT:
            if self._msg_opcode or first & 0x70:
                return
        elif opcode != 0 or self._msg_opcode != _TEXT:
            return
        length = buf[1] & 0x7F
        start = 2
        if length == 126:
            start = 4
        elif length == 127:
            start = 10
        masked = buf[1] & 0x80
        key_at = start
        if masked:
            start += 4
        if len(buf) <= start:
            return
        done = self._prevalidated
        available = len(buf) - start
        if available <= done:
            return
        chunk = bytes(buf[start + done :])
        if masked:
            chunk = apply_mask(chunk, bytes(buf[key_at : key_at + 4]), done)
        if opcode == _TEXT and not done:
            self._utf8.reset()
        if not self._utf8.feed(chunk):
            raise InvalidPayloadData("text message is not valid UTF-8")
        self._prevalidated = available

    def _handle_frames(self, frames: list[int | bytes]) -> None:
        append = self._events.append
        max_size = self.options.max_message_size
        if max_size is None:
            max_size = sys.maxsize
        # Whole unextended messages in one frame skip the general path below.
        fast = not self.frame_mode and not self._msg_opcode and not self._prevalidated
        it = iter(frames)
        payload: bytes
        for head, payload in zip(it, it):  # type: ignore[assignment]
            if fast and (head == 0x82 or head == 0x81):
                if len(payload) > max_size:
                    raise MessageTooBig(f"message of {len(payload)} bytes exceeds the limit of {max_size}")
                if head == 0x82:
                    append(BinaryMessage(payload))
                    continue
                try:
                    append(TextMessage(payload.decode()))
                except UnicodeDecodeError:
                    raise InvalidPayloadData("text message is not valid UTF-8") from None
                continue
            if head & 0x08:  # type: ignore[operator]
                if head & 0x70:  # type: ignore[operator]
                    # Extensions never see control frames, so no RSV bit means anything there;
                    # the scanner lets negotiated bits through (RFC 7692 §6 forbids RSV1 here).
                    raise ProtocolError("reserved bit set on a control frame")
                self._handle_control(head & 0x0F, payload)  # type: ignore[operator]
                if self.state is State.CLOSED:
                    return
            else:
                self._handle_data(head, payload)  # type: ignore[arg-type]
            fast = not self.frame_mode and not self._msg_opcode and not self._prevalidated

    def _handle_data(self, head: int, payload: bytes) -> None:
        opcode = head & 0x0F
        fin = bool(head & FIN)
        if opcode:
            if self._msg_opcode:
                raise ProtocolError("new data frame while a fragmented message is unfinished")
            self._msg_opcode = opcode
            self._msg_rsv = head & 0x70
            self._msg_size = 0
            self._msg_frames = 0
            if opcode == _TEXT and not self._prevalidated:
                self._utf8.reset()
        elif not self._msg_opcode:
            raise ProtocolError("continuation frame without a message to continue")
        elif head & 0x70:
            raise ProtocolError("reserved bit set on a continuation frame")

        options = self.options
        self._msg_frames += 1
        if options.max_fragments is not None and self._msg_frames > options.max_fragments:
            raise MessageTooBig(f"message spans more than {options.max_fragments} frames")
        max_size = options.max_message_size
        room = None if max_size is None else max_size - self._msg_size
        if self._msg_rsv:
            for extension in self.extensions:
                payload = extension.decode(self._msg_rsv, payload, fin, room)
        self._msg_size += len(payload)
        if room is not None and len(payload) > room:
            raise MessageTooBig(f"message exceeds the limit of {max_size} bytes")

        is_text = self._msg_opcode == _TEXT
        checked = self._prevalidated
        if checked:
            self._prevalidated = 0
        if is_text and not self._utf8.feed(payload[checked:] if checked else payload):
            raise InvalidPayloadData("text message is not valid UTF-8")
        if fin:
            if is_text and not self._utf8.at_boundary:
                raise InvalidPayloadData("text message ends inside a UTF-8 sequence")
            self._msg_opcode = 0
        if self.frame_mode:
            self._events.append(
                Frame(Opcode(opcode), payload, fin, bool(head & 0x40), bool(head & 0x20), bool(head & 0x10))
            )
            return
        if not fin:
            self._msg_parts.append(payload)
            return
        if self._msg_parts:
            self._msg_parts.append(payload)
            payload = b"".join(self._msg_parts)
            self._msg_parts = []
        if is_text:
            self._events.append(TextMessage(payload.decode("utf-8")))
        else:
            self._events.append(BinaryMessage(payload))

    def _handle_control(self, opcode: int, payload: bytes) -> None:
        if self.frame_mode:
            self._events.append(Frame(Opcode(opcode), payload))
        if opcode == _PING:
            if self.options.auto_pong and self.state is State.OPEN:
                if self._pongs_paused:
                    self._pending_pong = payload
                else:
                    self._write_frame(FIN | _PONG, payload)
            if not self.frame_mode:
                self._events.append(Ping(payload))
        elif opcode == _PONG:
            if not self.frame_mode:
                self._events.append(Pong(payload))
        else:
            code, reason = parse_close(payload)
            self.close_received = True
            if not self.close_sent:
                self._write_frame(FIN | _CLOSE, payload[:2])
                self.close_sent = True
            self.state = State.CLOSED
            self.close_code, self.close_reason = code, reason
            if not self.frame_mode:
                self._events.append(CloseReceived(code, reason))

    # -- handshake hooks, filled in by each side

    def _receive_handshake(self, data: bytes) -> None:
        raise NotImplementedError

    def _handshake_eof(self) -> None:
        raise NotImplementedError


class ServerConnection(Connection):
    """The server side: parses the upgrade request, then accepts or rejects it.

    A plain HTTP request (one the application answers with ``respond``) keeps
    the connection reading the next request when HTTP/1.1 keep-alive allows.
    """

    __slots__ = ("request", "_request_parser")

    is_client = False

    def __init__(self, options: Options | None = None, *, state: State = State.CONNECTING) -> None:
        super().__init__(options, state=state)
        self.request: Request | None = None
        self._request_parser: RequestParser | None = RequestParser(self.options.http_limits)

    def _receive_handshake(self, data: bytes) -> None:
        parser = self._request_parser
        if parser is None:
            # A request is waiting for accept() or respond(); keep what follows it.
            self._buf += data
            return
        try:
            request = parser.feed(data)
        except HandshakeError as exc:
            self._out.append(
                serialize_response(
                    handshake.reject_response(exc.status, str(exc), [*exc.headers, ("Connection", "close")])
                )
            )
            self.state = State.CLOSED
            self._events.append(HandshakeFailed(exc))
            return
        if request is None:
            return
        self._request_parser = None
        self.request = request
        self._buf += parser.leftover
        self._events.append(RequestReceived(request))

    def _handshake_eof(self) -> None:
        self.state = State.CLOSED
        self.close_code = 1006

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
        """
        request = self._pending_request()
        if options is not None:
            self.options = options
        handshake.check_request(request)
        offered = handshake.offered_subprotocols(request)
        if subprotocol is None and self.options.subprotocol in offered:
            subprotocol = self.options.subprotocol
        if subprotocol is not None and subprotocol not in offered:
            raise InvalidHandshake(f"subprotocol {subprotocol!r} was not offered")
        factories = server_extension_factories(self.options) if extensions is None else extensions
        accepted, answer = self._negotiate_extensions(request, factories)
        response = handshake.accept_response(
            request, subprotocol, handshake.format_extensions(answer) if answer else None, headers
        )
        self._out.append(serialize_response(response))
        self._open(subprotocol, accepted)
        if self._buf:
            early = bytes(self._buf)
            self._buf.clear()
            self.receive_data(early)

    @staticmethod
    def _negotiate_extensions(
        request: Request, factories: Sequence[ServerExtensionFactory]
    ) -> tuple[list[Extension], list[tuple[str, list[tuple[str, str | None]]]]]:
        accepted: list[Extension] = []
        answer: list[tuple[str, list[tuple[str, str | None]]]] = []
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
        request = self._pending_request()
        if keep_alive is None:
            keep_alive = request.version == "HTTP/1.1" and "close" not in (
                token.lower() for token in request.headers.get_tokens("Connection")
            )
        if not keep_alive and "Connection" not in response.headers:
            response.headers.add("Connection", "close")
        self._out.append(serialize_response(response))
        self.request = None
        if not keep_alive:
            self.state = State.CLOSED
            return
        self._request_parser = RequestParser(self.options.http_limits)
        pending = bytes(self._buf)
        self._buf.clear()
        if pending:
            self._receive_handshake(pending)

    def reject(self, status: int, body: bytes | str = b"", headers: Sequence[tuple[str, str]] = ()) -> None:
        """Refuse the pending request with an HTTP error and close."""
        self.respond(handshake.reject_response(status, body, headers), keep_alive=False)

    def _pending_request(self) -> Request:
        if self.state is not State.CONNECTING or self.request is None:
            raise InvalidState("no request is waiting for an answer")
        return self.request


class ClientConnection(Connection):
    """The client side: sends the upgrade request at once and checks the answer."""

    __slots__ = ("handshake", "response", "_response_parser", "_factories")

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
        self.response: Response | None = None
        self._response_parser = ResponseParser(self.options.http_limits)
        self._out.append(serialize_request(self.handshake.request()))

    def _receive_handshake(self, data: bytes) -> None:
        try:
            response = self._response_parser.feed(data)
            if response is None:
                return
            self.response = response
            subprotocol, answered = self.handshake.check_response(response)
            extensions = self._accept_extensions(answered)
        except HandshakeError as exc:
            self.state = State.CLOSED
            self.close_code = 1006
            self._events.append(HandshakeFailed(exc, self.response))
            return
        self._open(subprotocol, extensions)
        self._events.append(HandshakeComplete(subprotocol, tuple(e.name for e in extensions), response))
        leftover = self._response_parser.leftover
        if leftover:
            self.receive_data(leftover)

    def _accept_extensions(self, answered: list[tuple[str, list[tuple[str, str | None]]]]) -> list[Extension]:
        extensions: list[Extension] = []
        unused = list(self._factories)
        for name, params in answered:
            factory = next((f for f in unused if f.name == name), None)
            if factory is None:
                raise InvalidHandshake(f"server answered with extension {name!r} that was not offered")
            unused.remove(factory)
            extensions.append(factory.accept(params))
        return extensions

    def _handshake_eof(self) -> None:
        self.state = State.CLOSED
        self.close_code = 1006
        self._events.append(HandshakeFailed(InvalidHandshake("connection closed during the opening handshake")))
