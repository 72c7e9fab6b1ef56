"""WebSocket extensions: the hook the connection calls, and the ones wsstack ships."""

from .base import ClientExtensionFactory, Extension, ExtensionParams, ServerExtensionFactory

__all__ = ["Extension", "ExtensionParams", "ClientExtensionFactory", "ServerExtensionFactory"]
