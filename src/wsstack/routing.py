"""HTTP routes and the request context, shared by the asyncio and sync servers.

Nothing here does I/O: a transport resolves a request to a handler, builds
a ``RequestContext`` subclass that knows how to upgrade on its own
transport, and sends whatever ``context.response`` holds when the handler
returns without upgrading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from . import handshake
from .errors import InvalidHandshake
from .http11 import Headers, Request, Response
from .options import Options

if TYPE_CHECKING:
    import ssl

__all__ = [
    "Router",
    "RoutedServer",
    "RequestContext",
    "HTTPResponse",
    "Route",
    "check_port",
    "origin_allowed",
    "plain_response",
]

H = TypeVar("H", bound=Callable[..., Any])


@dataclass(slots=True)
class HTTPResponse:
    """The answer a handler builds for a plain HTTP request (any request it does not upgrade)."""

    status: int = 200
    headers: Headers = field(default_factory=Headers)
    body: bytes | str = b""

    def set_status(self, status: int) -> None:
        """Set the status code (the seed's ``resp().set_status(...)``)."""
        self.status = int(status)

    def set_header(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``."""
        kept = [(n, v) for n, v in self.headers.items() if n.lower() != name.lower()]
        self.headers = Headers([*kept, (name, value)])

    def to_response(self) -> Response:
        """The HTTP/1.1 message to send: a ``str`` body goes as UTF-8, ``text/plain`` unless a Content-Type is set."""
        body = self.body
        headers = Headers(self.headers.items())
        if isinstance(body, str):
            body = body.encode("utf-8")
            if "Content-Type" not in headers:
                headers.add("Content-Type", "text/plain; charset=utf-8")
        return Response(self.status, _reason(self.status), headers, body=body)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def plain_response(status: int, text: str = "", headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A short text answer: the body defaults to the status phrase."""
    return HTTPResponse(status, Headers(headers), text or f"{status} {_reason(status)}\n").to_response()


class RequestContext:
    """What a route handler receives: the request, the response to fill, and the upgrade.

    Transports subclass it to implement ``upgrade_to_websocket``.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self._response: HTTPResponse | None = None

    @property
    def response(self) -> HTTPResponse:
        """The answer to a request the handler does not upgrade, to fill in.

        Made when first used: a server keeps an upgraded request's context for
        the connection's life, and an empty answer with its headers is 220
        bytes that no WebSocket connection needs.
        """
        if self._response is None:
            self._response = HTTPResponse()
        return self._response

    @response.setter
    def response(self, response: HTTPResponse) -> None:
        self._response = response

    @property
    def method(self) -> str:
        """The request's method, such as ``"GET"``."""
        return self.request.method

    @property
    def path(self) -> str:
        """The request target up to any ``?``, still percent-encoded."""
        return self.request.path

    @property
    def query_params(self) -> dict[str, list[str]]:
        """Every value of every query parameter, as lists: ``?tag=a&tag=b`` is ``{"tag": ["a", "b"]}``."""
        return self.request.query_params

    @overload
    def query(self, name: str) -> str | None: ...
    @overload
    def query(self, name: str, default: str) -> str: ...
    @overload
    def query(self, name: str, default: str | None) -> str | None: ...

    def query(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``, or ``default`` when it is absent.

        Most parameters come once (``?name=alice`` is ``"alice"``, ``?name=``
        is ``""``); ``query_params`` has all the values of one given more than once.
        """
        values = self.request.query_params.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of the request header ``name`` (in any case), or ``default``."""
        return self.request.headers.get(name, default)

    def is_websocket_upgrade(self) -> bool:
        """The request asks for a WebSocket (by ``Upgrade`` and ``Connection``); the upgrade checks the rest."""
        return handshake.is_upgrade_request(self.request)

    def offered_subprotocols(self) -> list[str]:
        """Subprotocols the client offered, in its order of preference."""
        try:
            return handshake.offered_subprotocols(self.request)
        except InvalidHandshake:
            return []

    def resp(self) -> HTTPResponse:
        """``response``, in the seed's spelling: ``ctx.resp().set_status(...)``."""
        return self.response


@dataclass(frozen=True, slots=True)
class Route(Generic[H]):
    """One route: a path, the methods it answers and its handler."""

    path: str
    methods: frozenset[str]
    handler: H


class Router(Generic[H]):
    """Routes by path; an unknown path is 404 and a known path with another method is 405.

    A path ending in ``/*`` is a prefix route: ``"/static/*"`` matches
    ``/static/a.css`` and ``/static/``, and ``"/*"`` matches every path. An
    exact route wins over a prefix route, and a longer prefix over a shorter one.
    """

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, H]] = {}
        self._prefixes: list[tuple[str, dict[str, H]]] = []

    def route(self, path: str, methods: Sequence[str] = ("GET",)) -> Callable[[H], H]:
        """A decorator that routes requests for ``path`` with one of ``methods`` to the function it decorates."""
        if not path.startswith("/"):
            raise ValueError("a route path starts with '/'")

        def register(handler: H) -> H:
            if path.endswith("/*"):
                prefix = path[:-1]
                table = next((t for p, t in self._prefixes if p == prefix), None)
                if table is None:
                    table = {}
                    self._prefixes.append((prefix, table))
                    self._prefixes.sort(key=lambda item: -len(item[0]))
            else:
                table = self._routes.setdefault(path, {})
            for method in methods:
                table[method.upper()] = handler
            return handler

        return register

    def get(self, path: str) -> Callable[[H], H]:
        """``route(path, ("GET",))``: WebSocket upgrades are GET requests."""
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[H], H]:
        """``route(path, ("POST",))``."""
        return self.route(path, ("POST",))

    def put(self, path: str) -> Callable[[H], H]:
        """``route(path, ("PUT",))``."""
        return self.route(path, ("PUT",))

    def delete(self, path: str) -> Callable[[H], H]:
        """``route(path, ("DELETE",))``."""
        return self.route(path, ("DELETE",))

    def resolve(self, method: str, path: str) -> tuple[H | None, Response | None]:
        """The handler for a request, or the 404/405 answer when there is none."""
        table = self._routes.get(path)
        if table is None:
            table = next((t for prefix, t in self._prefixes if path.startswith(prefix)), None)
        if table is None:
            return None, plain_response(404)
        handler = table.get(method)
        if handler is None and method == "HEAD":
            # HEAD is GET without the body (RFC 9110 §9.3.2); the servers drop the body.
            handler = table.get("GET")
        if handler is None:
            return None, plain_response(405, headers=[("Allow", ", ".join(sorted(table)))])
        return handler, None


def check_port(port: int) -> None:
    """The port a server is asked to listen on is one: both servers call this before binding.

    Without it uvloop takes 99999 modulo 65536 and binds elsewhere in
    silence, and the socket module raises ``OverflowError`` for the sync server.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, not {port}")


def origin_allowed(request: Request, allowed: Sequence[str] | None) -> bool:
    """Cross-site WebSocket hijacking guard.

    Browsers always send ``Origin``; a request without one comes from a
    non-browser client, which a cookie-riding page cannot make, so it passes.
    """
    if allowed is None:
        return True
    origin = request.headers.get("Origin")
    return origin is None or origin in allowed


class RoutedServer(Generic[H]):
    """What the asyncio and sync servers share: options, routes and who may upgrade.

    ``max_connections`` bounds open WebSockets: an upgrade request beyond it
    gets 503 before its handler runs, and a handler that upgrades once the
    limit was reached while it ran gets ``HandshakeError`` (after the 503);
    ``allowed_origins`` lists the ``Origin`` values a browser may upgrade from
    (403 otherwise; requests without ``Origin`` pass, see ``origin_allowed``).
    ``route``, ``get``, ``post``, ``put`` and ``delete`` are its ``Router``'s
    decorators: ``@server.get("/ws")``.
    """

    def __init__(
        self,
        options: Options | None = None,
        *,
        max_connections: int | None = None,
        allowed_origins: Sequence[str] | None = None,
        ssl: ssl.SSLContext | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.options = options if options is not None else Options()
        self.router: Router[H] = Router()
        self.max_connections = max_connections
        self.allowed_origins = None if allowed_origins is None else list(allowed_origins)
        self.ssl = ssl
        self.shutdown_timeout = shutdown_timeout
        #: Open WebSockets.
        self.connections: set[Any] = set()
        #: Shutting down: upgrades get 503 and answered connections close.
        self.closing = False
        self.route = self.router.route
        self.get = self.router.get
        self.post = self.router.post
        self.put = self.router.put
        self.delete = self.router.delete

    def at_capacity(self) -> bool:
        """``max_connections`` WebSockets are open: another upgrade gets 503."""
        return self.max_connections is not None and len(self.connections) >= self.max_connections
