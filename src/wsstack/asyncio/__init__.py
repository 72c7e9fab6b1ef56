"""The asyncio transport: ``Server`` with routes, ``connect`` and the ``WebSocket`` connection."""

from ..session import broadcast
from .client import connect
from .connection import WebSocket
from .server import Context, Server

__all__ = ["Server", "Context", "WebSocket", "connect", "broadcast"]
