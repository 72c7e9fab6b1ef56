"""A server's HTTP request cycle on one TCP connection, written once for every transport.

Each transport reads requests, runs route handlers its own way (a task, a
thread) and writes bytes; everything it decides about a request comes from
here. The rules:

- A request goes to its route's handler; an unknown path is 404, a known path
  with another method 405, both keeping the connection alive.
- An upgrade request from a disallowed ``Origin`` is 403, one past
  ``max_connections`` or during shutdown 503, before any handler runs (a
  server at its limit spends no handler work on a connection it cannot
  take); the limit and shutdown are checked again at the upgrade itself,
  which then raises ``HandshakeError`` in the handler. A refused upgrade
  closes the connection.
- An upgrade runs with the server's options and the route's over them
  (``Options.merge``).
- A handler that returns without upgrading answers with ``ctx.response``; one
  that raises answers 500 (before an upgrade) or closes its WebSocket with
  1011 (after). A handler that upgraded closes its WebSocket normally when
  it returns. A ``HandshakeError`` (the upgrade has answered already) and a
  ``ConnectionClosed`` (the peer went away under the handler) are normal ends.
- HEAD is answered like GET without a body (RFC 9110 §9.3.2).
- After a plain answer the connection reads the next request when HTTP/1.1
  keep-alive allows and the server is not shutting down; otherwise it closes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..connection import ServerConnection, State
from ..errors import ConnectionClosed, HandshakeError, InvalidHandshake
from ..events import RequestReceived
from ..handshake import is_upgrade_request
from ..http11 import Request, Response
from ..options import Options
from ..routing import HTTPResponse, origin_allowed, plain_response

if TYPE_CHECKING:
    from ..routing import RoutedServer

__all__ = ["HTTPSession", "Outcome"]

logger = logging.getLogger("wsstack")

#: What ends a request: a plain answer, a close of its WebSocket (code, reason), or nothing more.
Outcome = Response | tuple[int, str] | None


class HTTPSession:
    """One server connection's requests, until it upgrades (see the module's rules)."""

    __slots__ = ("server", "core")

    def __init__(self, server: RoutedServer[Any]) -> None:
        self.server = server
        self.core = ServerConnection(server.options)
        # A peer's protocol error is answered after the handler has seen (and
        # possibly replied to) the messages that came before it.
        self.core.hold_failures = True

    def next_request(self) -> Request | None:
        """The request that arrived complete, if one did."""
        for event in self.core.events():
            if isinstance(event, RequestReceived):
                return event.request
        return None

    def route(self, request: Request) -> tuple[Any, Response | None, bool | None]:
        """The request's handler; or, without one, the answer to send and whether to keep the connection."""
        server = self.server
        handler, missing = server.router.resolve(request.method, request.path)
        if handler is None:
            return None, missing, None
        if is_upgrade_request(request):
            if not origin_allowed(request, server.allowed_origins):
                return None, plain_response(403, "origin not allowed"), False
            if server.at_capacity():
                return None, plain_response(503, "too many connections"), False
        return handler, None, None

    def outcome(self, request: Request, upgraded: bool, response: HTTPResponse, error: Exception | None) -> Outcome:
        """How a request ends once its handler returned (``error=None``) or raised ``error``."""
        if error is None:
            return (1000, "") if upgraded else response.to_response()
        if isinstance(error, HandshakeError):
            return None  # the upgrade answered with the error status already
        if isinstance(error, ConnectionClosed):
            # A send on this request's own connection after the peer closed it: a normal end.
            logger.debug("%s %s: connection closed under the handler (%s)", request.method, request.path, error)
            return None
        logger.error("handler for %s %s failed", request.method, request.path, exc_info=error)
        return (1011, "internal error") if upgraded else plain_response(500)

    def respond(self, response: Response, keep_alive: bool | None = None) -> bool | None:
        """Queue a plain answer to the pending request: whether to close the connection after writing it.

        ``None``: the request was answered already (nothing was queued).
        """
        core = self.core
        request = core.request
        if core.state is not State.REQUEST_RECEIVED or request is None:
            return None
        if request.method == "HEAD":
            response.body = b""
        if self.server.closing:
            keep_alive = False  # and the answer says so (Connection: close)
        core.respond(response, keep_alive)
        return self.core.state is State.CLOSED or self.server.closing

    def upgrade(
        self, options: Options | None, subprotocol: str | None, overrides: dict[str, Any] | None = None
    ) -> HandshakeError | None:
        """Accept the pending request; or queue the refusal and return the error to raise.

        The connection runs with the server's options, those of ``options``
        that differ from the defaults over them, and ``overrides`` over both
        (``Options.merge``): a route that turns compression on keeps the
        server's limits and timeouts. After a refusal the connection closes
        once the answer is written. The application's own mistakes (an
        impossible option, a subprotocol the client did not offer) raise
        ``TypeError`` or ``ValueError`` with nothing queued, so that the
        handler fails and the request is answered with 500 and logged.
        """
        server = self.server
        merged = server.options.merge(options, **(overrides or {}))
        error: HandshakeError
        if server.closing:
            error, answer = HandshakeError("the server is shutting down", status=503), "server shutting down"
        elif server.at_capacity():
            error, answer = HandshakeError("the server is at max_connections", status=503), "too many connections"
        else:
            try:
                self.core.accept(subprotocol=subprotocol, options=merged)
                return None
            except InvalidHandshake as exc:
                error, answer = exc, str(exc)
        self.respond(plain_response(error.status, answer, error.headers), keep_alive=False)
        return error
