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
    span, since every frame costs work even when it is tiny.
    """

    subprotocol: str | None = None
    enable_compression: bool = False
    compression_level: int = 6
    compression_memory_level: int = 8
    compression_window_bits: int = 15
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
    ping_interval: float | None = None
    ping_timeout: float | None = None
    max_queue: int = 16
    write_limit: int = 1 << 16
