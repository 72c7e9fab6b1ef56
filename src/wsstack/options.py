"""Settings shared by the core and the transports.

One dataclass rather than keyword soup, so the seed's
``Options(enable_compression=True, compression_level=6)`` reads the same in
Python, and so a transport can pass one object down to the core unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Options", "HTTPLimits"]


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Bounds on the HTTP/1.1 message head, so a hostile client costs bounded memory."""

    max_line: int = 8192
    max_headers: int = 128
    max_head_size: int = 65536
    max_body_size: int = 1 << 20


@dataclass(frozen=True, slots=True)
class Options:
    """Per-connection settings.

    ``max_message_size`` bounds a message after decompression; ``max_frame_size``
    bounds a single frame's payload as it is on the wire (``None`` means the
    message limit); ``max_fragments`` bounds how many frames one message may
    span, since every frame costs work even when it is tiny. ``auto_pong``
    answers pings without the application (RFC 6455 requires an answer).

    Used by the transports, not the core (which has no clock and no socket):

    * ``http_limits``: bounds on the HTTP request or response head.
    * ``open_timeout``: seconds for a complete request head (server; also the
      idle time of a keep-alive connection) or for the whole opening handshake
      (client): a slow or silent peer cannot hold a connection.
    * ``close_timeout``: seconds the closing handshake may take before the TCP
      connection is dropped.
    * ``ping_interval`` / ``ping_timeout``: a heartbeat ping every interval; no
      pong within the timeout fails the connection with 1011. ``None`` turns it off.
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
