"""Following a server's redirect of the opening handshake (RFC 9110 §15.4).

Each hop is a new connection to the URL the ``Location`` field names,
resolved against the URL that was redirected (it may be relative, and may
use the http/https scheme, which stand for ws/wss here). Two rules keep it
safe: a ``wss://`` connection is never redirected to ``ws://`` (that would
send the request, its cookies and tokens, in clear), and the number of hops
is bounded, so two servers pointing at each other cannot keep a client busy.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit, urlunsplit

from ..errors import HandshakeError, InvalidHandshake, ProxyError
from ..handshake import parse_ws_url

__all__ = ["REDIRECT_STATUSES", "redirect_target"]

#: The statuses that redirect a GET: 300 (multiple choices) and 305 (use proxy) leave the choice to the user.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def redirect_target(url: str, error: HandshakeError, hops: int, max_redirects: int) -> str | None:
    """The URL to connect to next when ``error`` is a redirect of ``url``; None when it is not one.

    ``hops`` is the number of redirects followed so far. Raises
    ``InvalidHandshake`` (with the redirect's status, headers and body) when
    the limit is reached, the Location is missing or not a WebSocket URL, or
    it would go from wss:// to ws://.
    """
    if isinstance(error, ProxyError) or error.status not in REDIRECT_STATUSES:
        return None  # a proxy's redirect is not the server's
    locations = [value for name, value in error.headers if name.lower() == "location"]

    def refuse(problem: str) -> InvalidHandshake:
        return InvalidHandshake(
            f"redirect {error.status} from {url}: {problem}", error.status, error.headers, error.body
        )

    if len(locations) != 1:
        raise refuse(f"expected one Location field, got {len(locations)}")
    if hops >= max_redirects:
        raise refuse(f"more than max_redirects={max_redirects} redirects")
    parts = urlsplit(urljoin(url, locations[0].strip()))
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise refuse(f"Location {locations[0]!r} is not an http(s) or ws(s) URL")
    # A fragment means nothing to a WebSocket server, and RFC 6455 §3 forbids one in the URL.
    target = urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))
    try:
        secure = parse_ws_url(target)[0]
    except ValueError as exc:
        raise refuse(f"Location {locations[0]!r}: {exc}") from None
    if parse_ws_url(url)[0] and not secure:
        raise refuse(f"refusing to follow Location {target} from wss:// to ws://")
    return target
