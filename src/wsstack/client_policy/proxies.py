"""Which proxy a client connection goes through, and the HTTP CONNECT exchange that opens a tunnel.

By default the proxy comes from the environment, as curl and most HTTP
clients read it: ``https_proxy`` for wss:// (the tunnel carries TLS to the
server), ``http_proxy`` for ws://, ``all_proxy`` for either when the first
is unset; the lower-case name wins over the upper-case one. ``no_proxy``
lists the hosts reached directly: ``*`` for all, a name for that host and
its subdomains (``example.com`` and ``.example.com`` both match
``a.example.com``), an IP address or CIDR network, any of them with
``:port`` to bypass only that port. ``localhost`` and loopback addresses
are always reached directly: no proxy can reach them.

A proxy URL is ``http://[user:password@]host[:port]`` (HTTP CONNECT, Basic
authentication) or ``socks5://``, ``socks5h://``, ``socks4://``,
``socks4a://`` (through python-socks, the ``wsstack[socks]`` extra; the
``h`` and ``a`` forms let the proxy resolve the server's name). A URL
without a scheme is an HTTP proxy. TLS to the proxy itself (``https://``)
is not supported.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from ..errors import HandshakeError, ProxyError
from ..handshake import parse_ws_url
from ..http11 import Headers, Request, ResponseParser, serialize_request
from ..options import HTTPLimits

__all__ = [
    "FROM_ENVIRONMENT",
    "ProxySetting",
    "Proxy",
    "parse_proxy_url",
    "proxy_for",
    "bypasses_proxy",
    "is_loopback",
    "HTTPTunnel",
    "socks_refusal",
]


class _Default(Enum):
    FROM_ENVIRONMENT = "from the environment"

    def __repr__(self) -> str:
        return "FROM_ENVIRONMENT"


#: The default of ``connect(proxy=...)``: the proxy the environment names, if any (``None`` turns proxies off).
FROM_ENVIRONMENT = _Default.FROM_ENVIRONMENT

ProxySetting = str | None | Literal[_Default.FROM_ENVIRONMENT]

_DEFAULT_PORTS = {"http": 80, "socks5": 1080, "socks5h": 1080, "socks4": 1080, "socks4a": 1080}


@dataclass(frozen=True)
class Proxy:
    """A proxy to connect through: ``scheme`` is ``http`` or a SOCKS version."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def is_socks(self) -> bool:
        """Whether the tunnel is opened by python-socks rather than by ``HTTPTunnel``."""
        return self.scheme != "http"

    @property
    def remote_dns(self) -> bool:
        """Whether the proxy, not this host, resolves the server's name (``socks5h``, ``socks4a``; HTTP always)."""
        return self.scheme in ("http", "socks5h", "socks4a")

    def socks_url(self) -> str:
        """The URL python-socks takes: its schemes have no ``h``/``a`` suffix (``rdns`` says it instead)."""
        scheme = self.scheme[:6]  # socks5h -> socks5, socks4a -> socks4
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="") + ":" + quote(self.password or "", safe="") + "@"
        return f"{scheme}://{auth}{_authority(self.host, self.port)}"

    def __repr__(self) -> str:
        # Never the password: proxies end up in logs and tracebacks.
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"Proxy({self.scheme}://{user}{_authority(self.host, self.port)})"


def parse_proxy_url(url: str) -> Proxy:
    """The proxy a URL names; ValueError (naming the problem) for one that cannot be used."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise ValueError(f"proxy {_redacted(url)}: TLS to the proxy (https://) is not supported")
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"proxy {_redacted(url)}: scheme {scheme!r} is not http, socks5(h) or socks4(a)")
    if not parts.hostname:
        raise ValueError(f"proxy {_redacted(url)} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"proxy {_redacted(url)} has an invalid port") from None
    if port == 0:
        raise ValueError(f"proxy {_redacted(url)}: port 0 is not a valid destination")
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return Proxy(scheme, parts.hostname, _DEFAULT_PORTS[scheme] if port is None else port, username, password)


def proxy_for(url: str, setting: ProxySetting, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy to reach ``url`` through: ``setting`` itself, or the environment's when it is the default.

    An explicit proxy URL is used for every host; ``no_proxy`` only applies
    to a proxy taken from the environment.
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        return parse_proxy_url(setting)
    if setting is not FROM_ENVIRONMENT:
        raise TypeError(f"proxy must be a URL, None or FROM_ENVIRONMENT, not {type(setting).__name__}")
    secure, host, port, _ = parse_ws_url(url)
    value = _variable(environ, "https_proxy" if secure else "http_proxy") or _variable(environ, "all_proxy")
    if not value or is_loopback(host) or bypasses_proxy(host, port, _variable(environ, "no_proxy")):
        return None
    return parse_proxy_url(value)


def is_loopback(host: str) -> bool:
    """``localhost``, a name under it (RFC 6761 §6.3) or a loopback address: never reached through a proxy.

    A proxy cannot reach this machine's loopback interface; sending such a
    connection to it only breaks local development and tests wherever a
    proxy is configured (Go's ``ProxyFromEnvironment`` has the same rule).
    """
    host = host.lower().strip("[]").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma- or space-separated entries) says to reach ``host:port`` directly."""
    host = host.lower().strip("[]").rstrip(".")
    address = _address(host)
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.lower()
        if entry == "*":
            return True
        pattern, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                pass
            continue
        pattern = pattern.lstrip("*").lstrip(".").rstrip(".")
        if pattern and (host == pattern or host.endswith("." + pattern)):
            return True
    return False


class HTTPTunnel:
    """The CONNECT exchange with an HTTP proxy (RFC 9110 §9.3.6), sans-IO.

    Send ``data_to_send()``, then feed what the proxy answers to
    ``receive_data`` (b"" for the end of the stream) until it returns True:
    the connection is then a byte stream to the server. A refusal raises
    ``ProxyError`` with the proxy's status, headers and body (bounded by
    ``HTTPLimits``). A 2xx answer must not frame a body (RFC 9110 §9.3.6);
    one that does (Content-Length above 0) is waited on, and times out.
    """

    def __init__(self, proxy: Proxy, host: str, port: int, limits: HTTPLimits | None = None) -> None:
        self.proxy = proxy
        authority = _authority(host, port)
        headers = Headers([("Host", authority)])
        if proxy.username is not None:
            credentials = f"{proxy.username}:{proxy.password or ''}".encode()
            headers.add("Proxy-Authorization", "Basic " + base64.b64encode(credentials).decode("ascii"))
        self._request = serialize_request(Request("CONNECT", authority, headers))
        self._parser = ResponseParser(limits)

    def data_to_send(self) -> bytes:
        """The CONNECT request."""
        return self._request

    def receive_data(self, data: bytes) -> bool:
        """True once the proxy answered 2xx; raises ``ProxyError`` when it refused or broke off."""
        where = _authority(self.proxy.host, self.proxy.port)
        if not data:
            raise ProxyError(f"the proxy {where} closed the connection before answering CONNECT", status=502)
        try:
            response = self._parser.feed(data)
        except HandshakeError as exc:
            raise ProxyError(f"the proxy {where} answered CONNECT with malformed HTTP: {exc}", status=502) from None
        if response is None:
            return False
        leftover = self._parser.leftover
        if 200 <= response.status <= 299:
            if leftover:
                # The server has not been sent anything yet: these bytes cannot be its.
                raise ProxyError(f"the proxy {where} sent bytes after its answer to CONNECT", status=502)
            return True
        raise ProxyError(
            f"the proxy {where} refused CONNECT: {response.status} {response.reason}".rstrip(),
            response.status,
            response.headers.raw,
            # A body framed by Content-Length was read whole; one delimited by the close is kept as far as it came.
            response.body or leftover,
        )


def _variable(environ: Mapping[str, str], name: str) -> str:
    """The lower-case variable, else the upper-case one (curl's order), trimmed; '' when unset."""
    value = environ.get(name)
    if value is None or not value.strip():
        value = environ.get(name.upper(), "")
    return value.strip()


def _split_port(entry: str) -> tuple[str, int | None]:
    """A no_proxy entry's host part and its port, if it names one (``[::1]:8080``, ``host:80``)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _authority(host: str, port: int) -> str:
    """host:port as a request-target and Host field (RFC 9112 §3.2.3), IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.password is None:
        return url
    return url.replace(":" + parts.password + "@", ":***@", 1)


def socks_refusal(proxy: Proxy, message: str, reply_code: int | None) -> ProxyError:
    """A SOCKS proxy's refusal as the ``ProxyError`` an HTTP proxy would give for it.

    Our credentials refused: 407; the proxy's rules forbid the server
    (SOCKS5 reply 2): 403; anything else (the server unreachable, refused,
    timed out): 502, which a reconnecting client retries.
    """
    if reply_code is None and "authentication" in message.lower():
        status = 407
    elif reply_code == 2:
        status = 403
    else:
        status = 502
    return ProxyError(f"the SOCKS proxy {_authority(proxy.host, proxy.port)} refused: {message}", status)
