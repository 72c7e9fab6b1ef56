"""The send half of a connection: messages and control frames in, bytes out.

The rule it keeps: every frame goes into one output list in the order it
was made, and ``data_to_send`` / ``buffers_to_send`` hand that list over
whole, so a transport writes frames exactly in order and never half of one.
A client masks every frame with a fresh key (RFC 6455 §5.3), drawn in
the C call that frames it (``serialize_client_frame``), a server never
does. Extensions encode whole data messages, never control frames.

Two fast paths beside the general ``_send_message``, each tested against it:

* a message without fragmentation or extensions, on an open connection, is
  one ``serialize_frame`` call (header and payload, masked on the client,
  in one allocation) with no further Python call, or for text one
  ``serialize_text`` call, which frames ASCII text without encoding it first;
* above ``_JOIN_LIMIT`` a server frame's payload is queued as its own
  buffer behind its header instead of being copied into one bytes object
  with it (``buffers_to_send`` hands the two over as they are).

``Writer`` is one of the classes ``Connection`` is made of (see
``connection.py``); it owns the fields named in ``WRITER_SLOTS`` and reads
the connection's state, extensions and close code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConnectionClosed, InvalidState
from .extensions import Extension
from .frames import FIN, OPCODE_BITS, Opcode, frame_header
from .speedups import serialize_client_frame, serialize_client_text, serialize_frame, serialize_text
from .state import State

__all__ = ["Writer", "WRITER_SLOTS", "payload_of"]

#: The fields ``Writer`` owns; ``Connection`` declares them in its ``__slots__``.
WRITER_SLOTS = ("_out", "_pongs_paused", "_pending_pong")

# Above this size a server frame's payload is queued as its own buffer
# instead of being copied behind its header.
_JOIN_LIMIT = 4096

# Module constants for the per-message code: looking a member up on an enum
# class costs about 45 ns in CPython 3.11, a global about 5 ns.
_OPEN = State.OPEN
_FIN_TEXT = FIN | Opcode.TEXT
_FIN_BINARY = FIN | Opcode.BINARY
_FIN_PONG = FIN | Opcode.PONG


class Writer:
    """Frames what the application sends into the output buffer; the sending part of ``Connection``."""

    # No slots of its own (see Reader).
    if not TYPE_CHECKING:
        __slots__ = ()

    # Owned here.
    _out: list[bytes]
    _pongs_paused: bool
    _pending_pong: bytes | None

    # The connection's, read here.
    state: State
    extensions: list[Extension]
    is_client: bool
    close_code: int | None
    close_reason: str

    def _init_writer(self) -> None:
        self._out = []
        self._pongs_paused = False
        self._pending_pong = None

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

    # --------------------------------------------------------------- messages

    def send_text(self, text: str, fragment_size: int | None = None) -> None:
        """Send a text message (UTF-8), in frames of ``fragment_size`` bytes when given."""
        if type(text) is str and fragment_size is None and self.state is _OPEN and not self.extensions:
            # The fast path of ``send``, written out again: calling it would cost a call per
            # message. serialize_text frames ASCII text without encoding it first: 233 ns
            # against 307 for serialize_frame(text.encode()) at 125 B (C, interleaved timeit).
            if self.is_client:
                self._out.append(serialize_client_text(_FIN_TEXT, text))
                return
            if len(text) <= _JOIN_LIMIT:
                self._out.append(serialize_text(_FIN_TEXT, text))
                return
        try:
            payload = text.encode()
        except AttributeError:
            raise TypeError(f"send_text() takes str, not {type(text).__name__}") from None
        self._send_message(Opcode.TEXT, payload, fragment_size)

    def send_binary(self, data: bytes | bytearray | memoryview, fragment_size: int | None = None) -> None:
        """Send a binary message, in frames of ``fragment_size`` bytes when given.

        Raises ``TypeError`` for anything but a bytes-like object (``str`` included).
        """
        kind = type(data)
        if kind is not bytes and kind is not bytearray and kind is not memoryview:
            if isinstance(data, str):
                raise TypeError("send_binary() takes a bytes-like object, not str")
            data = _bytes_like(data, "send_binary() takes a bytes-like object")
        self.send(data, fragment_size)

    def send(self, message: str | bytes | bytearray | memoryview, fragment_size: int | None = None) -> None:
        """``str`` goes out as a text message, anything bytes-like as binary.

        Anything else raises ``TypeError``: an ``int`` (``True`` included)
        would otherwise become that many zero bytes, as ``bytes(5)`` does.
        """
        # The exact types first: the check costs nothing for the usual message. bytes() of a
        # bytearray or memoryview is one copy; _bytes_like's memoryview first would add 50%.
        kind = type(message)
        if kind is str:
            if fragment_size is None and self.state is _OPEN and not self.extensions:  # as in send_text
                if self.is_client:
                    self._out.append(serialize_client_text(_FIN_TEXT, message))  # type: ignore[arg-type]
                    return
                if len(message) <= _JOIN_LIMIT:
                    self._out.append(serialize_text(_FIN_TEXT, message))  # type: ignore[arg-type]
                    return
            first, payload = _FIN_TEXT, message.encode()  # type: ignore[union-attr]
        elif kind is bytes:
            first, payload = _FIN_BINARY, message
        elif kind is bytearray or kind is memoryview:
            first, payload = _FIN_BINARY, bytes(message)  # type: ignore[arg-type]
        elif isinstance(message, str):
            first, payload = _FIN_TEXT, message.encode()
        else:
            first, payload = _FIN_BINARY, _bytes_like(message, "send() takes str or a bytes-like object")
        if fragment_size is None and self.state is _OPEN and not self.extensions:
            # The usual message, without the general path's checks and calls.
            if self.is_client:
                self._out.append(serialize_client_frame(first, payload))
                return
            if len(payload) <= _JOIN_LIMIT:
                self._out.append(serialize_frame(first, payload))
                return
        self._send_message(first & OPCODE_BITS, payload, fragment_size)

    # -------------------------------------------------------- control frames

    def ping(self, data: bytes | str = b"") -> None:
        """Send a ping; the peer answers with a pong carrying the same data (§5.5.2)."""
        self._send_control(Opcode.PING, data)

    def pong(self, data: bytes | str = b"") -> None:
        """Send a pong: an answer to a ping, or unsolicited as a heartbeat (§5.5.3).

        With ``Options.auto_pong`` on (the default) every ping is answered
        already, so a pong sent in answer to one is a second pong. That is
        left as it is, not suppressed: §5.5.3 allows unsolicited pongs and
        a peer ignores one it did not wait for, while telling "an answer to
        that ping" from "a heartbeat that happens to carry the same data"
        would be a guess that makes ``pong()`` sometimes send nothing.
        To answer pings yourself, turn ``auto_pong`` off.
        """
        self._send_control(Opcode.PONG, data)

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
            if self.state is _OPEN:
                self._write_frame(_FIN_PONG, payload)

    # ------------------------------------------------------------- internals

    def _answer_ping(self, payload: bytes) -> None:
        """The automatic pong; held back as the latest one while pongs are paused."""
        if self._pongs_paused:
            self._pending_pong = payload
        else:
            self._write_frame(_FIN_PONG, payload)

    def _write_frame(self, first_byte: int, payload: bytes) -> None:
        if self.is_client:
            self._out.append(serialize_client_frame(first_byte, payload))
        elif len(payload) > _JOIN_LIMIT:
            self._out.append(frame_header(first_byte, len(payload)))
            self._out.append(payload)
        else:
            self._out.append(serialize_frame(first_byte, payload))

    def _check_can_send(self) -> None:
        if self.state is not _OPEN:
            if self.state < _OPEN:
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
            self._write_frame(Opcode.CONTINUATION, bytes(view[pos : pos + fragment_size]))
            pos += fragment_size
        self._write_frame(FIN | Opcode.CONTINUATION, bytes(view[pos:]))

    def _send_control(self, opcode: int, data: bytes | str) -> None:
        payload = payload_of(data, "ping()" if opcode == Opcode.PING else "pong()")
        if len(payload) > 125:
            raise ValueError("control frame payload over 125 bytes")
        self._check_can_send()
        self._write_frame(FIN | opcode, payload)


def payload_of(data: object, call: str) -> bytes:
    """What ``data`` puts on the wire: ``str`` as UTF-8, a bytes-like object as its bytes.

    Anything else raises ``TypeError`` naming ``call``: ``bytes(42)`` would
    make a ping of 42 zero bytes. For every caller that takes either type
    (pings, pongs, broadcasts), so that all of them refuse the same values
    with the same words.
    """
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode()
    return _bytes_like(data, f"{call} takes str or a bytes-like object")


def _bytes_like(data: object, accepted: str) -> bytes:
    """The bytes of a bytes-like object (one that exports a buffer); ``TypeError`` saying ``accepted`` otherwise."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{accepted}, not {type(data).__name__}") from None
    return bytes(view)
