"""Settings shared by the core and the transports.

One dataclass rather than keyword soup, so the seed's
``Options(enable_compression=True, compression_level=6)`` reads the same in
Python, and so a transport can pass one object down to the core unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["Options", "HTTPLimits"]


def _check_int(owner: object, name: str, low: int, high: int | None = None, *, optional: bool = False) -> None:
    """``owner.name`` is an int in ``[low, high]`` (or ``None`` when optional), else the error names the field.

    bool is refused although it is an int: ``max_queue=True`` is a mistake, not 1.
    """
    value = getattr(owner, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{type(owner).__name__}.{name} must be {kind}, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{type(owner).__name__}.{name} must be {bounds}, not {value}")


def _check_seconds(owner: object, name: str, *, zero: bool = False) -> None:
    """``owner.name`` is a positive (or with ``zero``, non-negative), finite number of seconds or ``None`` (off)."""
    value = getattr(owner, name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{type(owner).__name__}.{name} must be seconds (a number) or None, not {type(value).__name__}")
    if not ((value >= 0 if zero else value > 0) and math.isfinite(value)):
        kind = "0 or more seconds" if zero else "a positive number of seconds"
        raise ValueError(f"{type(owner).__name__}.{name} must be {kind} or None, not {value}")


def _check_bool(owner: object, name: str) -> None:
    value = getattr(owner, name)
    if not isinstance(value, bool):
        raise TypeError(f"{type(owner).__name__}.{name} must be a bool, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Bounds on the HTTP/1.1 message head, so a hostile client costs bounded memory.

    * ``max_line``: bytes in one line of the head (the start line or a header line).
    * ``max_headers``: header fields in one head.
    * ``max_head_size``: bytes in the whole head, blank lines before it included.
    * ``max_body_size``: the largest Content-Length accepted (a larger one is a 413).
    """

    max_line: int = 8192
    max_headers: int = 128
    max_head_size: int = 65536
    max_body_size: int = 1 << 20

    def __post_init__(self) -> None:
        # A limit of 0 would refuse every request line and header; a body of 0 bytes is a real policy.
        for name in ("max_line", "max_headers", "max_head_size"):
            _check_int(self, name, 1)
        _check_int(self, "max_body_size", 0)


@dataclass(frozen=True, slots=True)
class Options:
    """Per-connection settings.

    ``max_message_size`` bounds a message after decompression; ``max_frame_size``
    bounds a single frame's payload as it is on the wire (``None`` means the
    message limit); ``max_fragments`` bounds how many frames one message may
    span, since every frame costs work even when it is tiny. ``auto_pong``
    answers pings without the application (RFC 6455 requires an answer).
    ``subprotocol`` is the subprotocol a server selects when the client offers
    it and neither ``accept()`` nor ``upgrade_to_websocket()`` names one.

    Used by the transports, not the core (which has no clock and no socket):

    * ``http_limits``: bounds on the HTTP request or response head.
    * ``open_timeout``: seconds for a complete request head (server; also the
      idle time of a keep-alive connection) or for the whole opening handshake
      (client): a slow or silent peer cannot hold a connection.
    * ``close_timeout``: seconds the closing handshake may take before the TCP
      connection is dropped (0: at once, without waiting for the peer's close).
    * ``ping_interval`` / ``ping_timeout``: a heartbeat ping every interval; no
      pong (nor any other byte from the peer) within the timeout fails the
      connection with 1011. ``None`` turns it off.
    * ``max_queue``: received messages held for ``recv()`` before reading stops.
    * ``write_limit``: bytes in the write buffer above which ``send()`` waits.

    Compression (permessage-deflate, RFC 7692; see docs/compression.md), used
    when no extensions are passed explicitly:

    * ``enable_compression``: a client offers it, a server accepts offers of it.
    * ``compression_level`` (-1 to 9) and ``compression_memory_level`` (1 to 9):
      zlib's speed/ratio trade-off, and the size of the compressor's hash
      tables and buffers, ``1 << (memory_level + 9)`` bytes.
    * ``compression_window_bits`` (8 to 15): the LZ77 window this side
      compresses with, ``1 << (bits + 2)`` bytes of compressor memory. A client
      offers it as ``client_max_window_bits``, a server announces it as
      ``server_max_window_bits``; the peer may only lower it.
    * ``decompression_window_bits`` (8 to 15): the window this side asks the
      peer to keep to, which is what its decompressor then allocates. A client
      requests it as ``server_max_window_bits`` (a server that cannot comply
      declines compression); a server imposes it as ``client_max_window_bits``
      when the client's offer allows. 15 asks nothing.
    * ``compression_threshold``: messages shorter than this many bytes are
      sent uncompressed, where compression saves little and costs a zlib call.
    * ``server_no_context_takeover`` / ``client_no_context_takeover``: that
      side starts each message from an empty window, trading ratio for the
      right to free the peer's decompressor between messages. A client
      requests the first and promises the second; a server answers both.

    Every field is checked when the object is made: a value out of its range
    raises ``ValueError`` and a value of the wrong type ``TypeError``, each
    naming the field, so a mistake shows at the line that made it and never
    as a failed handshake.
    """

    subprotocol: str | None = None
    enable_compression: bool = False
    compression_level: int = 6
    compression_memory_level: int = 5
    compression_window_bits: int = 12
    decompression_window_bits: int = 15
    compression_threshold: int = 0
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    max_message_size: int | None = 1 << 20
    max_frame_size: int | None = None
    max_fragments: int | None = 4096
    auto_pong: bool = True
    http_limits: HTTPLimits = field(default_factory=HTTPLimits)
    open_timeout: float | None = 10.0
    close_timeout: float | None = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_queue: int = 16
    write_limit: int = 1 << 16

    def __post_init__(self) -> None:
        """Refuse an impossible setting here, naming it, rather than at the first handshake that needs it.

        The compression ranges are zlib's (``level`` -1 to 9, ``memLevel`` 1 to
        9) and RFC 7692's (window bits 8 to 15, §7.1.2); the rest are sizes,
        counts and timeouts, for which zero or less means nothing (``None``
        is the way to say "no limit" or "off" where that is allowed), but for
        a ``close_timeout`` of 0.
        """
        if self.subprotocol is not None:
            if not isinstance(self.subprotocol, str):
                raise TypeError(f"Options.subprotocol must be a str or None, not {self.subprotocol!r}")
            if not self.subprotocol:
                raise ValueError("Options.subprotocol must be a non-empty name (None selects none)")
        for name in ("enable_compression", "server_no_context_takeover", "client_no_context_takeover", "auto_pong"):
            _check_bool(self, name)
        _check_int(self, "compression_level", -1, 9)
        _check_int(self, "compression_memory_level", 1, 9)
        _check_int(self, "compression_window_bits", 8, 15)
        _check_int(self, "decompression_window_bits", 8, 15)
        _check_int(self, "compression_threshold", 0)
        _check_int(self, "max_message_size", 1, optional=True)
        _check_int(self, "max_frame_size", 1, optional=True)
        _check_int(self, "max_fragments", 1, optional=True)
        if not isinstance(self.http_limits, HTTPLimits):
            raise TypeError(f"Options.http_limits must be an HTTPLimits, not {type(self.http_limits).__name__}")
        for name in ("open_timeout", "ping_interval", "ping_timeout"):
            _check_seconds(self, name)
        # 0 drops TCP as soon as the close frame is out, without waiting for the peer's: a real choice.
        _check_seconds(self, "close_timeout", zero=True)
        _check_int(self, "max_queue", 1)
        _check_int(self, "write_limit", 0)  # 0: every send waits until the buffer has drained

    def merge(self, options: Options | None = None, /, **changes: Any) -> Options:
        """These options with a route's own settings over them: what one upgrade runs with.

        A frozen dataclass cannot tell a field the caller set from one left at
        its default, so ``options`` overrides only the fields where it differs
        from ``Options()``: ``Options(enable_compression=True)`` turns
        compression on and keeps this object's limits and timeouts. Keyword
        ``changes`` apply last and always, so they are the way to set a field
        back to its default value for one route. An unknown keyword is a
        ``TypeError`` and a value out of range a ``ValueError``, as when making
        an ``Options``.
        """
        if options is None and not changes:
            return self  # the usual upgrade: the server's options as they are
        if options is not None:
            if not isinstance(options, Options):
                raise TypeError(f"options must be an Options or None, not {type(options).__name__}")
            differing = {name: getattr(options, name) for name in _FIELD_NAMES}
            differing = {name: value for name, value in differing.items() if value != getattr(_DEFAULTS, name)}
            changes = {**differing, **changes}
        unknown = sorted(set(changes) - _FIELD_NAMES)
        if unknown:
            raise TypeError(f"Options has no field {unknown[0]!r}")
        return replace(self, **changes) if changes else self


#: What ``Options.merge`` compares a route's options with to tell what they set.
_DEFAULTS = Options()
_FIELD_NAMES = frozenset(f.name for f in fields(Options))
