"""permessage-deflate (RFC 7692): the per-message codec and its negotiation on both sides.

A compressed message is one raw DEFLATE stream cut at a sync flush, minus the
``00 00 ff ff`` that every such flush ends with; RSV1 on its first frame says
so. Whether the LZ77 window carries over from one message to the next
("context takeover") and how large it may be is agreed per direction in the
handshake, which is what most of this module is about.

Three zlib facts shape the code:

* zlib's deflate has no 256-byte window: ``deflateInit2`` refuses window bits
  8 for raw streams (zlib 1.2.8 and older silently used 9). A compressor that
  agreed to 8 runs with 9, which still honours the peer's limit: zlib never
  matches further back than its window minus 262 bytes (``MAX_DIST``), 250
  bytes for a 512-byte window. The tests check this with an inflater that
  enforces a 256-byte window on every match.
* Where 8 was agreed, the zlib manual tells inflaters to use 9 all the same.
  Decompressors here never go below 9: it costs 256 bytes, tolerates a peer
  whose library rounds 8 up without zlib's margin, and a larger window
  decodes any stream a smaller one does.
* ``decompress(data, max_length)`` stops producing output at ``max_length``
  and keeps the rest of the input aside, so a message's size limit caps the
  memory and time a decompression bomb can cost, whatever its ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import InternalError, InvalidHandshake, InvalidPayloadData, MessageTooBig
from ..frames import RSV1
from .base import ClientExtensionFactory, Extension, ExtensionParams, ServerExtensionFactory

__all__ = ["PerMessageDeflate", "ServerPerMessageDeflate", "ClientPerMessageDeflate"]

NAME = "permessage-deflate"

# The empty stored block a flush ends with; it stays off the wire (RFC 7692 §7.2.1).
_MARKER = b"\x00\x00\xff\xff"
_FULL_WINDOW = 15
# RFC 7692 §7.1.2: a decimal integer 8-15 without leading zeros, nothing else.
_WINDOW_VALUES = {str(bits): bits for bits in range(8, 16)}
# Blocks with BFINAL set that one frame may hold; each restarts the inflater,
# so without a bound a frame of two-byte final blocks would cost far more CPU than its size.
_MAX_FINAL_BLOCKS = 16
# Most output one decompress() call may produce; messages up to this size take one call.
_STEP = 1 << 18


def _check_window_bits(bits: int, what: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 8 <= bits <= 15:
        raise ValueError(f"{what} must be an integer from 8 to 15, not {bits!r}")
    return bits


def _check_settings(level: int, memory_level: int, threshold: int) -> None:
    if not -1 <= level <= 9:
        raise ValueError(f"compression level must be -1 to 9, not {level}")
    if not 1 <= memory_level <= 9:
        raise ValueError(f"compression memory level must be 1 to 9, not {memory_level}")
    if threshold < 0:
        raise ValueError(f"compression threshold must not be negative, not {threshold}")


class PerMessageDeflate(Extension):
    """The codec one connection agreed to; "compress" is this side's direction, "decompress" the peer's.

    The zlib objects are made on first use (and the decompressor is dropped
    after each message when the peer resets its context anyway), so an idle
    connection costs nothing beyond this object. Without context takeover the
    compressor is kept and reset by a full flush instead: a new one per message
    made compressing 1 KiB messages twice as slow, as its fresh buffers fault in.
    """

    name = NAME
    rsv_bits = RSV1

    __slots__ = (
        "compress_window_bits",
        "decompress_window_bits",
        "compress_no_context_takeover",
        "decompress_no_context_takeover",
        "_level",
        "_memory_level",
        "_threshold",
        "_deflate_wbits",
        "_flush_mode",
        "_inflate_wbits",
        "_compressor",
        "_decompressor",
    )

    def __init__(
        self,
        *,
        compress_window_bits: int = _FULL_WINDOW,
        decompress_window_bits: int = _FULL_WINDOW,
        compress_no_context_takeover: bool = False,
        decompress_no_context_takeover: bool = False,
        level: int = 6,
        memory_level: int = 8,
        threshold: int = 0,
    ) -> None:
        _check_window_bits(compress_window_bits, "compress_window_bits")
        _check_window_bits(decompress_window_bits, "decompress_window_bits")
        _check_settings(level, memory_level, threshold)
        #: The largest LZ77 window (as bits) this side compresses with.
        self.compress_window_bits = compress_window_bits
        #: The largest window the peer may compress with.
        self.decompress_window_bits = decompress_window_bits
        #: This side starts every message from an empty window.
        self.compress_no_context_takeover = compress_no_context_takeover
        #: The peer starts every message from an empty window.
        self.decompress_no_context_takeover = decompress_no_context_takeover
        self._level = level
        self._memory_level = memory_level
        self._threshold = threshold
        self._deflate_wbits = -max(compress_window_bits, 9)
        self._flush_mode = zlib.Z_FULL_FLUSH if compress_no_context_takeover else zlib.Z_SYNC_FLUSH
        self._inflate_wbits = -max(decompress_window_bits, 9)
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(compress_window_bits={self.compress_window_bits}, "
            f"decompress_window_bits={self.decompress_window_bits}, "
            f"compress_no_context_takeover={self.compress_no_context_takeover}, "
            f"decompress_no_context_takeover={self.decompress_no_context_takeover})"
        )

    # ---------------------------------------------------------------- encode

    def encode(self, payload: bytes) -> tuple[int, bytes]:
        """Compress a whole outgoing message; one shorter than the threshold goes out as it is."""
        if len(payload) < self._threshold:
            return 0, payload
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, self._deflate_wbits, self._memory_level
            )
        try:
            # compress() before flush() even when empty: a flush right after a flush yields nothing.
            data = compressor.compress(payload)
            tail = compressor.flush(self._flush_mode)
        except zlib.error as exc:  # only a broken zlib stream state gets here
            raise InternalError(f"compression failed: {exc}") from None
        if data:
            return RSV1, data + tail[:-4]
        return RSV1, tail[:-4]

    def shared_encoding(self) -> tuple[str, int, int, int, int] | None:
        """Without context takeover on this side a message compresses the same on every connection
        with the same settings (the compressor is reset before each one), so those can share it."""
        if not self.compress_no_context_takeover:
            return None
        return (NAME, self._deflate_wbits, self._level, self._memory_level, self._threshold)

    # ---------------------------------------------------------------- decode

    def decode(self, message_rsv: int, payload: bytes, fin: bool, max_size: int | None) -> bytes:
        """Decompress one frame of a message as it arrives, never holding more than ``max_size`` bytes of it."""
        if not message_rsv & RSV1:
            return payload
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(self._inflate_wbits)
        if fin:
            payload += _MARKER
        try:
            data = _inflate(decompressor, payload, max_size)
            if decompressor.eof:
                data = self._after_final_block(data, max_size)
        except zlib.error as exc:
            raise InvalidPayloadData(f"invalid compressed data: {exc}") from None
        if fin and self.decompress_no_context_takeover:
            self._decompressor = None
        return data

    def _after_final_block(self, data: bytes, max_size: int | None) -> bytes:
        """Go on decoding after a DEFLATE block with BFINAL set (RFC 7692 §7.2.3.4).

        A sender may flush with such a block, and more blocks may follow it,
        but zlib ends the stream there. A fresh inflater takes over the rest,
        seeded with this frame's output as its window, so back-references into
        it still resolve; one reaching further back fails as corrupt data
        rather than decoding to something wrong.
        """
        assert self._decompressor is not None
        parts = [data]
        produced = len(data)
        history = data
        window = 1 << -self._inflate_wbits
        for _ in range(_MAX_FINAL_BLOCKS):
            rest = self._decompressor.unused_data
            if history:
                fresh = zlib.decompressobj(self._inflate_wbits, zdict=history[-window:])
            else:
                fresh = zlib.decompressobj(self._inflate_wbits)
            self._decompressor = fresh
            if not rest:
                return b"".join(parts)
            more = _inflate(fresh, rest, None if max_size is None else max_size - produced)
            parts.append(more)
            produced += len(more)
            if not fresh.eof:
                return b"".join(parts)
            history = (history + more)[-window:]
        raise InvalidPayloadData(f"more than {_MAX_FINAL_BLOCKS} final DEFLATE blocks in one frame")


def _inflate(decompressor: zlib._Decompress, data: bytes, room: int | None) -> bytes:
    """Decompress ``data`` in steps of at most ``_STEP`` bytes of output, refusing to go past ``room``.

    Each step asks for at most one byte more than is left, so "too big" is told apart
    from "exactly fits", and the parts are joined only once they are known to
    fit: a bomb costs at most ``room`` plus one step, however far it inflates.
    A step that fills its quota may have left output inside zlib even with
    all input consumed, so only a short step ends the loop.
    """
    if room is None:
        return decompressor.decompress(data)
    quota = min(room + 1, _STEP)
    out = decompressor.decompress(data, quota)
    if len(out) < quota:
        return out
    parts = [out]
    produced = quota
    while produced <= room:
        quota = min(room + 1 - produced, _STEP)
        out = decompressor.decompress(decompressor.unconsumed_tail, quota)
        if out:
            parts.append(out)
            produced += len(out)
        if len(out) < quota:
            return parts[0] if len(parts) == 1 else b"".join(parts)
    raise MessageTooBig("message exceeds the size limit once decompressed")


# ------------------------------------------------------------------ negotiation


class _Params(NamedTuple):
    """The permessage-deflate parameters of one offer or response; window bits are None when absent."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    client_max_window_bits: int | None


def _parse_params(params: ExtensionParams, *, response: bool) -> _Params:
    """Check one offer's or response's parameters (RFC 7692 §7.1); ValueError says what is wrong.

    In an offer ``client_max_window_bits`` may come without a value, meaning
    "the server may limit my window"; it then reads as 15.
    """
    seen: set[str] = set()
    flags = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    bits: dict[str, int | None] = {"server_max_window_bits": None, "client_max_window_bits": None}
    for name, value in params:
        if name in seen:
            raise ValueError(f"duplicate parameter {name}")
        seen.add(name)
        if name in flags:
            if value is not None:
                raise ValueError(f"{name} takes no value")
            flags[name] = True
        elif name in bits:
            if value is None and name == "client_max_window_bits" and not response:
                bits[name] = _FULL_WINDOW
            elif value in _WINDOW_VALUES:
                bits[name] = _WINDOW_VALUES[value]
            else:
                raise ValueError(f"invalid {name} value {value!r}")
        else:
            raise ValueError(f"unknown parameter {name}")
    return _Params(
        flags["server_no_context_takeover"],
        flags["client_no_context_takeover"],
        bits["server_max_window_bits"],
        bits["client_max_window_bits"],
    )


class ServerPerMessageDeflate(ServerExtensionFactory):
    """The server's side of the negotiation: accepts any valid offer, declines the rest.

    ``server_no_context_takeover`` and ``client_no_context_takeover`` are
    answered whether or not the client asked (RFC 7692 §7.1.1 allows it), and a
    client's request for either is always granted. ``server_max_window_bits``
    caps this side's window: the answer carries the smaller of it and the
    client's request. ``client_max_window_bits`` limits the client's window
    when the client's offer lets the server do so; a client that does not
    offer that parameter keeps a 15-bit window.
    """

    name = NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = _FULL_WINDOW,
        client_max_window_bits: int = _FULL_WINDOW,
        level: int = 6,
        memory_level: int = 8,
        threshold: int = 0,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = _check_window_bits(server_max_window_bits, "server_max_window_bits")
        self.client_max_window_bits = _check_window_bits(client_max_window_bits, "client_max_window_bits")
        _check_settings(level, memory_level, threshold)
        self.level = level
        self.memory_level = memory_level
        self.threshold = threshold

    def accept(self, offer: ExtensionParams) -> tuple[ExtensionParams, Extension] | None:
        """The response parameters and the extension for a client's offer, or ``None`` to decline it."""
        try:
            asked = _parse_params(offer, response=False)
        except ValueError:
            return None  # RFC 7692 §5: an invalid offer is declined, not fatal
        server_reset = asked.server_no_context_takeover or self.server_no_context_takeover
        client_reset = asked.client_no_context_takeover or self.client_no_context_takeover
        server_bits = min(self.server_max_window_bits, asked.server_max_window_bits or _FULL_WINDOW)
        answer: ExtensionParams = []
        if server_reset:
            answer.append(("server_no_context_takeover", None))
        if client_reset:
            answer.append(("client_no_context_takeover", None))
        if asked.server_max_window_bits is not None or server_bits < _FULL_WINDOW:
            answer.append(("server_max_window_bits", str(server_bits)))
        client_bits = _FULL_WINDOW
        if asked.client_max_window_bits is not None:
            client_bits = min(self.client_max_window_bits, asked.client_max_window_bits)
            if client_bits < _FULL_WINDOW:
                answer.append(("client_max_window_bits", str(client_bits)))
        extension = PerMessageDeflate(
            compress_window_bits=server_bits,
            decompress_window_bits=client_bits,
            compress_no_context_takeover=server_reset,
            decompress_no_context_takeover=client_reset,
            level=self.level,
            memory_level=self.memory_level,
            threshold=self.threshold,
        )
        return answer, extension


class ClientPerMessageDeflate(ClientExtensionFactory):
    """The client's side of the negotiation: one offer, and a strict check of the answer.

    ``server_no_context_takeover`` and ``server_max_window_bits`` (below 15)
    are requests the server must grant or decline the offer.
    ``client_no_context_takeover`` is a promise this side keeps regardless.
    ``client_max_window_bits`` caps this side's window; the parameter is offered
    without a value so the server may lower it further, unless
    ``offer_client_max_window_bits`` is false.
    """

    name = NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = _FULL_WINDOW,
        client_max_window_bits: int = _FULL_WINDOW,
        offer_client_max_window_bits: bool = True,
        level: int = 6,
        memory_level: int = 8,
        threshold: int = 0,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = _check_window_bits(server_max_window_bits, "server_max_window_bits")
        self.client_max_window_bits = _check_window_bits(client_max_window_bits, "client_max_window_bits")
        self.offer_client_max_window_bits = offer_client_max_window_bits
        _check_settings(level, memory_level, threshold)
        self.level = level
        self.memory_level = memory_level
        self.threshold = threshold

    def offers(self) -> Sequence[ExtensionParams]:
        """The offer this client sends, from its settings (one offer, no fallbacks)."""
        offer: ExtensionParams = []
        if self.server_no_context_takeover:
            offer.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            offer.append(("client_no_context_takeover", None))
        if self.server_max_window_bits < _FULL_WINDOW:
            offer.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.offer_client_max_window_bits:
            # Without a value: any answer from 8 to 15 is then valid, and this side
            # compresses with the smaller of that and its own setting. (Offering
            # the setting as a value lets a server lower it too, but servers that
            # answer a larger value exist, the Autobahn testsuite's among them.)
            offer.append(("client_max_window_bits", None))
        return [offer]

    def accept(self, response: ExtensionParams) -> Extension:
        """The extension the answer agrees to; ``InvalidHandshake`` if it breaks RFC 7692 or refuses a request."""
        try:
            agreed = _parse_params(response, response=True)
        except ValueError as exc:
            raise InvalidHandshake(f"permessage-deflate response: {exc}") from None
        if self.server_no_context_takeover and not agreed.server_no_context_takeover:
            raise InvalidHandshake("permessage-deflate response: server_no_context_takeover was requested, not granted")
        server_bits = agreed.server_max_window_bits
        if server_bits is None:
            if self.server_max_window_bits < _FULL_WINDOW:
                raise InvalidHandshake("permessage-deflate response: server_max_window_bits was requested, not granted")
            server_bits = _FULL_WINDOW
        elif server_bits > self.server_max_window_bits:
            raise InvalidHandshake(
                f"permessage-deflate response: server_max_window_bits={server_bits} exceeds the "
                f"{self.server_max_window_bits} requested"
            )
        client_bits = self.client_max_window_bits
        if agreed.client_max_window_bits is not None:
            if not self.offer_client_max_window_bits:
                raise InvalidHandshake("permessage-deflate response: client_max_window_bits was not offered")
            client_bits = min(client_bits, agreed.client_max_window_bits)
        return PerMessageDeflate(
            compress_window_bits=client_bits,
            decompress_window_bits=server_bits,
            compress_no_context_takeover=self.client_no_context_takeover or agreed.client_no_context_takeover,
            decompress_no_context_takeover=agreed.server_no_context_takeover,
            level=self.level,
            memory_level=self.memory_level,
            threshold=self.threshold,
        )
