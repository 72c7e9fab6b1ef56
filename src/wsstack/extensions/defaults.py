"""Which extensions a connection offers or accepts when the caller names none: what ``Options`` asks for."""

from __future__ import annotations

from ..options import Options
from .base import ClientExtensionFactory, ServerExtensionFactory
from .permessage_deflate import ClientPerMessageDeflate, ServerPerMessageDeflate


def server_extension_factories(options: Options) -> list[ServerExtensionFactory]:
    """permessage-deflate when compression is enabled: this side's window is the server's."""
    if not options.enable_compression:
        return []
    return [
        ServerPerMessageDeflate(
            server_no_context_takeover=options.server_no_context_takeover,
            client_no_context_takeover=options.client_no_context_takeover,
            server_max_window_bits=options.compression_window_bits,
            client_max_window_bits=options.decompression_window_bits,
            level=options.compression_level,
            memory_level=options.compression_memory_level,
            threshold=options.compression_threshold,
        )
    ]


def client_extension_factories(options: Options) -> list[ClientExtensionFactory]:
    """permessage-deflate when compression is enabled: this side's window is the client's."""
    if not options.enable_compression:
        return []
    return [
        ClientPerMessageDeflate(
            server_no_context_takeover=options.server_no_context_takeover,
            client_no_context_takeover=options.client_no_context_takeover,
            server_max_window_bits=options.decompression_window_bits,
            client_max_window_bits=options.compression_window_bits,
            level=options.compression_level,
            memory_level=options.compression_memory_level,
            threshold=options.compression_threshold,
        )
    ]
