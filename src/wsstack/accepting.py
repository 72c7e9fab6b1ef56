"""Taking connections from a listening socket: the one loop both servers run when it turns readable.

The decisions (what an error means, when to log, when to pause) are the
session layer's (``session.accept``); this is the I/O that applies them,
written once so that the asyncio and threaded servers cannot drift apart.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from .session import AcceptFailures, that_connection_only

__all__ = ["ACCEPT_BATCH", "accept_batch"]

logger = logging.getLogger("wsstack")

#: Connections taken per readiness event, so that a burst of new clients
#: cannot starve the ones already connected.
ACCEPT_BATCH = 64


def accept_batch(
    listener: socket.socket, failures: AcceptFailures, now: Callable[[], float], *, others_paused: bool = False
) -> tuple[list[socket.socket], bool]:
    """Up to ``ACCEPT_BATCH`` new connections, non-blocking and with TCP_NODELAY, and whether to pause.

    Pause (True) means stop watching ``listener`` for ``ACCEPT_RETRY``
    seconds: ``accept()`` failed for another reason than the connection it
    was taking (out of descriptors, mostly), and the socket stays readable.
    ``others_paused``: another listening socket of the same server is still
    paused, so an empty backlog here does not end the run of failures.
    """
    accepted: list[socket.socket] = []
    for _ in range(ACCEPT_BATCH):
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            if failures.failing and not others_paused:
                failures.caught_up(now())
            return accepted, False
        except OSError as exc:
            if that_connection_only(exc):
                logger.debug("accept() lost a connection: %s", exc)
                continue
            failures.failed(exc, now())
            return accepted, True
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # macOS: EINVAL once the peer has shut the socket down
            logger.debug("accept() took a connection already gone: %s", exc)
            conn.close()
            continue
        accepted.append(conn)
    return accepted, False
