"""WebSocket extensions: the hook the connection calls, and the ones wsstack ships."""

from .base import ClientExtensionFactory, Extension, ExtensionParams, ServerExtensionFactory
from .permessage_deflate import ClientPerMessageDeflate, PerMessageDeflate, ServerPerMessageDeflate

__all__ = [
    "Extension",
    "ExtensionParams",
    "ClientExtensionFactory",
    "ServerExtensionFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflate",
    "ClientPerMessageDeflate",
]
