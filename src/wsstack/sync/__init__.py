"""The threaded transport: ``Server`` with routes, ``connect``/``reconnect`` and the blocking ``WebSocket``.

The same API as ``wsstack.asyncio`` with blocking calls. One I/O thread per
server (and one shared by all clients) reads every socket and runs the
timers; application code runs on a thread per connection. See docs/sync.md.
"""

from ..session import broadcast
from .client import connect, reconnect
from .connection import WebSocket
from .server import Context, Server

__all__ = ["Server", "Context", "WebSocket", "connect", "reconnect", "broadcast"]
