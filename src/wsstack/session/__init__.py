"""The session layer: every policy a transport would otherwise write for itself, once.

Below it the sans-IO core speaks the protocol; above it each transport
(``wsstack.asyncio``, ``wsstack.sync``) does only its own I/O. Nothing here
touches a socket, a clock, a thread or an event loop: sessions return
decisions, and times come in as arguments.

- ``websocket``: one connection's receive queue and its bounds, pings and
  round-trip times, heartbeat deadlines, held failures, frame mode and when
  to close TCP (``WebSocketSession``, and the ``Action`` flags it returns);
- ``http``: a server's request cycle before an upgrade (``HTTPSession``);
- ``broadcast``: one message to many connections, encoded once (``broadcast``);
- ``view``: the read-only connection state every transport shows (``CoreView``);
- ``accept``: a server out of descriptors, backing off and logging once (``AcceptFailures``).
"""

from .accept import ACCEPT_RETRY, AcceptFailures, that_connection_only
from .broadcast import Broadcastable, SharedFrames, broadcast
from .http import HTTPSession, Outcome
from .view import CoreView, Message
from .websocket import Action, WebSocketSession

__all__ = [
    "WebSocketSession",
    "Action",
    "HTTPSession",
    "Outcome",
    "SharedFrames",
    "Broadcastable",
    "broadcast",
    "CoreView",
    "Message",
    "AcceptFailures",
    "that_connection_only",
    "ACCEPT_RETRY",
]
