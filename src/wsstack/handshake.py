"""The RFC 6455 §4 opening handshake, both sides, as pure functions over HTTP messages.

Nothing here reads or writes bytes: the server gets a parsed Request, checks
it and builds the 101 (or an error response); the client builds its Request
and checks the parsed Response. The connection layer decides what to do with
the outcome, including which extensions to accept.

Status codes a server answers with (carried on InvalidHandshake):

* 405 with ``Allow: GET`` for another method: RFC 6455 demands GET and RFC
  9110 §15.5.6 gives the precise answer for a method the resource refuses.
* 426 with ``Sec-WebSocket-Version: 13`` when the version is missing or not
  13 (RFC 6455 §4.2.2). It is checked before the key, so a client speaking
  another draft, whose key fields differ, still learns which version to use.
* 400 for everything else: HTTP/1.0, Host missing or repeated, no
  ``Upgrade: websocket`` or ``Connection: upgrade`` token, a bad key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http
import os
import re
from collections.abc import Iterable, Sequence
from typing import NoReturn, TypeAlias
from urllib.parse import urlsplit

from .errors import InvalidHandshake
from .http11 import Headers, Request, Response, is_token

__all__ = [
    "GUID",
    "ExtensionParams",
    "ExtensionHeader",
    "accept_key",
    "generate_key",
    "check_request",
    "is_upgrade_request",
    "offered_subprotocols",
    "parse_extensions",
    "format_extensions",
    "accept_response",
    "reject_response",
    "ClientHandshake",
    "parse_ws_url",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: An extension's parameters in header order; a parameter without ``=`` has the value None.
ExtensionParams: TypeAlias = list[tuple[str, str | None]]
#: One extension as Sec-WebSocket-Extensions lists it (RFC 6455 §9.1): its token and parameters.
#: The negotiated extension object made from it is ``wsstack.extensions.Extension``.
ExtensionHeader: TypeAlias = tuple[str, ExtensionParams]

# Fields the handshake writes itself; callers' extra headers may not replace them.
_SERVER_FIELDS = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions"}
)
_CLIENT_FIELDS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "origin",
    }
)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.6.4: quoted-string, with the group holding the escaped content.
_QUOTED_STRING = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value proving the server read ``key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64-encoded."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def is_upgrade_request(request: Request) -> bool:
    """Whether a request asks for WebSocket at all; cheap and never raises, for routing."""
    return _has_token(request.headers, "Upgrade", "websocket") and _has_token(request.headers, "Connection", "upgrade")


def check_request(request: Request) -> str:
    """Validate a client's opening handshake and return its Sec-WebSocket-Key.

    Raises InvalidHandshake whose ``status`` and ``headers`` make the error
    response (see the module docstring for the codes).
    """
    headers = request.headers
    if request.method != "GET":
        raise InvalidHandshake(f"WebSocket needs GET, not {request.method}", status=405, headers=[("Allow", "GET")])
    if request.version != "HTTP/1.1":
        raise InvalidHandshake(f"WebSocket needs HTTP/1.1, not {request.version}")
    hosts = headers.get_all("Host")
    if len(hosts) != 1 or not hosts[0]:
        raise InvalidHandshake("exactly one non-empty Host header is required")
    if not _has_token(headers, "Upgrade", "websocket"):
        raise InvalidHandshake("Upgrade header does not name websocket")
    if not _has_token(headers, "Connection", "upgrade"):
        raise InvalidHandshake("Connection header does not include upgrade")
    if headers.get_all("Sec-WebSocket-Version") != ["13"]:
        raise InvalidHandshake(
            "unsupported or missing Sec-WebSocket-Version", status=426, headers=[("Sec-WebSocket-Version", "13")]
        )
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise InvalidHandshake("exactly one Sec-WebSocket-Key header is required")
    try:
        nonce = base64.b64decode(keys[0], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidHandshake("Sec-WebSocket-Key is not base64") from None
    if len(nonce) != 16:
        raise InvalidHandshake("Sec-WebSocket-Key does not decode to 16 bytes")
    return keys[0]


def offered_subprotocols(request: Request) -> list[str]:
    """The subprotocols the client offered, in its order of preference."""
    protocols = request.headers.get_tokens("Sec-WebSocket-Protocol")
    for protocol in protocols:
        if not is_token(protocol):
            raise InvalidHandshake(f"invalid subprotocol {protocol!r}")
    return protocols


def parse_extensions(values: Iterable[str]) -> list[ExtensionHeader]:
    """Parse Sec-WebSocket-Extensions values (RFC 6455 §9.1) into (name, params) pairs.

    Parameters keep their order; a parameter without '=' has the value None.
    A quoted value is unescaped and must then be a token, as §9.1 requires.
    Empty list elements are skipped (RFC 9110 §5.6.1). Raises InvalidHandshake.
    """
    return [extension for value in values for extension in _ExtensionScanner(value).extensions()]


def format_extensions(extensions: Iterable[ExtensionHeader]) -> str:
    """The Sec-WebSocket-Extensions value for ``extensions``; values are tokens so none is quoted."""
    elements = []
    for name, params in extensions:
        parts = [_require_token(name, "extension name")]
        for param, value in params:
            _require_token(param, "extension parameter")
            parts.append(param if value is None else f"{param}={_require_token(value, 'parameter value')}")
        elements.append("; ".join(parts))
    return ", ".join(elements)


def accept_response(
    request: Request,
    subprotocol: str | None = None,
    extensions: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """The 101 Switching Protocols answering ``request``.

    The request is checked again (InvalidHandshake if it is not an upgrade).
    ValueError for a subprotocol the client did not offer, an extensions value
    that does not parse, or an extra header the handshake sets itself.
    """
    key = check_request(request)
    if subprotocol is not None and subprotocol not in offered_subprotocols(request):
        raise ValueError(f"the client did not offer subprotocol {subprotocol!r}")
    if extensions:
        _require_extensions(extensions)
    extra = list(extra_headers)
    _refuse_overrides(extra, _SERVER_FIELDS)
    headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))])
    if subprotocol is not None:
        headers.add("Sec-WebSocket-Protocol", subprotocol)
    if extensions:
        headers.add("Sec-WebSocket-Extensions", extensions)
    for name, value in extra:
        headers.add(name, value)
    return Response(101, "Switching Protocols", headers)


def reject_response(status: int, body: bytes | str = b"", headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An error (or plain HTTP) response; a str body is sent as UTF-8 text/plain.

    ``status`` must be 200-599. Connection: close is not added: whether the
    connection can be kept alive is the caller's call.
    """
    if not 200 <= status <= 599:
        raise ValueError(f"status {status} is not a final response status")
    fields = Headers(headers)
    if isinstance(body, str):
        body = body.encode("utf-8")
        if "Content-Type" not in fields:
            fields.add("Content-Type", "text/plain; charset=utf-8")
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return Response(status, reason, fields, body=body)


class ClientHandshake:
    """The client half: builds the upgrade request and checks the server's answer.

    ``key`` is generated once, so ``request()`` is repeatable and
    ``check_response()`` can verify the accept value against it. Arguments
    are validated here (ValueError), so mistakes surface before any I/O.
    """

    def __init__(
        self,
        host: str,
        port: int | None,
        resource: str = "/",
        secure: bool = False,
        subprotocols: Sequence[str] = (),
        extensions: str | None = None,
        origin: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        if not host:
            raise ValueError("host is empty")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        _check_resource(resource)
        for protocol in subprotocols:
            _require_token(protocol, "subprotocol")
        if extensions:
            _require_extensions(extensions)
        self.extra_headers = list(extra_headers)
        _refuse_overrides(self.extra_headers, _CLIENT_FIELDS)
        self.host = host
        self.port = port
        self.resource = resource
        self.secure = secure
        self.subprotocols = tuple(subprotocols)
        self.extensions = extensions
        self.origin = origin
        self.key = generate_key()

    def request(self) -> Request:
        """The GET request that opens the connection."""
        headers = Headers(
            [
                ("Host", self._host_field()),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", "13"),
            ]
        )
        if self.subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(self.subprotocols))
        if self.extensions:
            headers.add("Sec-WebSocket-Extensions", self.extensions)
        if self.origin is not None:
            headers.add("Origin", self.origin)
        for name, value in self.extra_headers:
            headers.add(name, value)
        return Request("GET", self.resource, headers)

    def check_response(self, response: Response) -> tuple[str | None, list[ExtensionHeader]]:
        """Validate the server's answer (RFC 6455 §4.1); return (subprotocol, extensions).

        The extensions are only parsed: whether they are acceptable is for the
        connection layer, which knows what it offered and supports.
        """
        headers = response.headers
        if response.status != 101:
            raise InvalidHandshake(
                f"expected status 101, server answered {response.status} {response.reason}".rstrip(),
                status=response.status,
                headers=response.headers.raw,
                body=response.body,
            )
        if not _has_token(headers, "Upgrade", "websocket"):
            raise InvalidHandshake("response Upgrade header does not name websocket")
        if not _has_token(headers, "Connection", "upgrade"):
            raise InvalidHandshake("response Connection header does not include upgrade")
        if headers.get_all("Sec-WebSocket-Accept") != [accept_key(self.key)]:
            raise InvalidHandshake("Sec-WebSocket-Accept is missing or does not match the key")
        return self._chosen_subprotocol(headers), parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))

    def _chosen_subprotocol(self, headers: Headers) -> str | None:
        if "Sec-WebSocket-Protocol" not in headers:
            return None
        chosen = headers.get_tokens("Sec-WebSocket-Protocol")
        if len(chosen) != 1:
            raise InvalidHandshake("the server must choose exactly one subprotocol")
        if chosen[0] not in self.subprotocols:
            raise InvalidHandshake(f"the server chose subprotocol {chosen[0]!r}, which was not offered")
        return chosen[0]

    def _host_field(self) -> str:
        host = self.host if self.host.isascii() else self.host.encode("idna").decode("ascii")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if self.port is None or self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def parse_ws_url(url: str) -> tuple[bool, str, int, str]:
    """Split a ws:// or wss:// URL into (secure, host, port, resource).

    The port defaults to 80 or 443 and the resource to '/'. ValueError for
    another scheme, a fragment (RFC 6455 §3 forbids one), user info (it would
    be silently dropped), a missing host, or a resource that is not printable
    ASCII (percent-encode it first).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL: {url!r}")
    if "#" in url:
        raise ValueError("WebSocket URLs cannot have a fragment")
    if "@" in parts.netloc:
        raise ValueError("WebSocket URLs cannot carry user info")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    secure = scheme == "wss"
    port = parts.port  # ValueError when not a number in 0-65535
    if port == 0:
        raise ValueError("port 0 is not a valid destination")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    _check_resource(resource)
    return secure, parts.hostname, (443 if secure else 80) if port is None else port, resource


class _ExtensionScanner:
    """A cursor over one Sec-WebSocket-Extensions value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def extensions(self) -> list[ExtensionHeader]:
        result: list[ExtensionHeader] = []
        while self._skip_ows():
            if self._take(","):
                continue  # an empty list element
            name = self._token("extension name")
            params: ExtensionParams = []
            while self._skip_ows() and self._take(";"):
                self._skip_ows()
                param = self._token("parameter name")
                value = None
                if self._skip_ows() and self._take("="):
                    self._skip_ows()
                    value = self._value()
                params.append((param, value))
            result.append((name, params))
            if self._skip_ows() and not self._take(","):
                self._fail(f"unexpected {self.text[self.pos]!r}")
        return result

    def _skip_ows(self) -> bool:
        """Move past whitespace; True when text remains."""
        while self.text.startswith((" ", "\t"), self.pos):
            self.pos += 1
        return self.pos < len(self.text)

    def _take(self, char: str) -> bool:
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def _token(self, what: str) -> str:
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            self._fail(f"expected {what}")
        self.pos = match.end()
        return match.group()

    def _value(self) -> str:
        if not self.text.startswith('"', self.pos):
            return self._token("parameter value")
        match = _QUOTED_STRING.match(self.text, self.pos)
        if match is None:
            self._fail("malformed quoted string")
        self.pos = match.end()
        value = _QUOTED_PAIR.sub(lambda pair: pair.group(1), match.group(1))
        if not is_token(value):
            self._fail(f"quoted value {value!r} is not a token")
        return value

    def _fail(self, problem: str) -> NoReturn:
        raise InvalidHandshake(f"Sec-WebSocket-Extensions: {problem} at offset {self.pos} in {self.text!r}")


def _has_token(headers: Headers, name: str, token: str) -> bool:
    return any(element.lower() == token for element in headers.get_tokens(name))


def _require_token(value: str, what: str) -> str:
    if not is_token(value):
        raise ValueError(f"invalid {what} {value!r}")
    return value


def _require_extensions(value: str) -> None:
    try:
        parse_extensions([value])
    except InvalidHandshake as exc:
        raise ValueError(str(exc)) from None


def _refuse_overrides(fields: list[tuple[str, str]], reserved: frozenset[str]) -> None:
    for name, _ in fields:
        if name.lower() in reserved:
            raise ValueError(f"{name} is set by the handshake and cannot be overridden")


def _check_resource(resource: str) -> None:
    if not (resource.startswith("/") and resource.isascii() and resource.isprintable() and " " not in resource):
        raise ValueError(f"resource must be printable ASCII starting with '/': {resource!r}")
