"""What the ASGI application sees of the upgrade request, and the HTTP answers it can give instead.

The ``websocket`` scope follows the ASGI WebSocket spec 2.4 as uvicorn
fills it: ``path`` is percent-decoded and ``raw_path`` is not, both behind
``root_path``; header names are lowercased bytes and values the bytes that
came on the wire (the parser read them as latin-1, so encoding back as
latin-1 gives them unchanged); ``subprotocols`` lists the client's offers in
its order of preference.

The denial response (the ``websocket.http.response`` extension) is built
whole, once the application has sent its last body part: holding the head
until then lets it carry a ``Content-Length`` when the application gave
none, so the client needs no chunked decoding to read a refusal.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ..handshake import offered_subprotocols, reject_response
from ..http11 import Headers, Request, Response

__all__ = ["websocket_scope", "DenialResponse"]


def websocket_scope(
    request: Request,
    *,
    asgi_version: str,
    root_path: str,
    scheme: str,
    server: tuple[str, int | None] | None,
    client: tuple[str, int] | None,
    state: dict[str, Any],
) -> dict[str, Any]:
    """The ASGI ``websocket`` scope of an upgrade request (raises ``InvalidHandshake`` for bad subprotocols)."""
    raw_path, _, query_string = request.target.partition("?")
    return {
        "type": "websocket",
        "asgi": {"version": asgi_version, "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "path": root_path + unquote(raw_path),
        "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
        "query_string": query_string.encode("ascii"),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()
        ],
        "subprotocols": offered_subprotocols(request),
        "state": state,
        "extensions": {"websocket.http.response": {}},
    }


def decode_headers(fields: Any) -> list[tuple[str, str]]:
    """ASGI header pairs (bytes) as the core's (str, str) pairs; a wrong shape is a ``TypeError`` here."""
    pairs = []
    for field in fields:
        try:
            name, value = field
        except (TypeError, ValueError):
            raise TypeError(f"an ASGI header is a (name, value) pair, not {field!r}") from None
        if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
            raise TypeError(f"ASGI header names and values are bytes, not {field!r}")
        pairs.append((name.decode("latin-1"), value.decode("latin-1")))
    return pairs


class DenialResponse:
    """An HTTP response the application sends instead of accepting (``websocket.http.response.*``)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: Any, headers: list[tuple[str, str]]) -> None:
        # 1xx is not a final answer: nothing could follow it on this connection.
        if not isinstance(status, int) or not 200 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        self.status = status
        self.headers = headers
        self.body: list[bytes] = []

    def add_body(self, body: Any) -> None:
        """Take one ``websocket.http.response.body`` chunk (``TypeError`` unless bytes-like)."""
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"websocket.http.response.body needs bytes, not {type(body).__name__}")
        if body:
            self.body.append(bytes(body))

    def response(self, default_headers: list[tuple[str, str]]) -> Response:
        """The response as it stands, with uvicorn's default headers (Server, Date) where the application set none."""
        response = reject_response(self.status, b"".join(self.body), self.headers)
        fields = response.headers
        defaults = [field for field in default_headers if field[0] not in fields]
        if "Content-Type" not in fields:
            defaults.append(("Content-Type", "text/plain; charset=utf-8"))
        response.headers = Headers([*defaults, *fields.items()])
        return response
