"""wsstack.client_policy: proxies from the environment, the CONNECT exchange, redirects, backoff, retries, timeouts."""

from __future__ import annotations

import base64
import itertools
import math
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsstack.client_policy import (
    FROM_ENVIRONMENT,
    Backoff,
    HTTPTunnel,
    Phase,
    Proxy,
    Reconnection,
    bypasses_proxy,
    parse_proxy_url,
    proxy_for,
    redirect_target,
    should_retry,
    socks_refusal,
    timeout_message,
)
from wsstack.errors import ConnectionClosed, HTTPParseError, InvalidHandshake, ProxyError
from wsstack.options import HTTPLimits

# Labels start with a letter: all-digit names are IP addresses, which no_proxy matches exactly or by CIDR only.
LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
DOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(".".join)

# ------------------------------------------------------------------ proxy URLs and the environment


def test_proxy_urls() -> None:
    assert parse_proxy_url("proxy.local:3128") == Proxy("http", "proxy.local", 3128)
    assert parse_proxy_url("http://proxy.local") == Proxy("http", "proxy.local", 80)
    assert parse_proxy_url("socks5h://u%40x:p%3Aw@[::1]") == Proxy("socks5h", "::1", 1080, "u@x", "p:w")
    assert parse_proxy_url(" SOCKS4://h:9 ").scheme == "socks4"
    for bad, problem in [
        ("https://h:1", "TLS to the proxy"),
        ("ftp://h:1", "scheme 'ftp'"),
        ("http://:8080", "no host"),
        ("http://h:99999", "invalid port"),
        ("http://h:0", "port 0"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_proxy_url(bad)


def test_a_proxy_never_shows_its_password() -> None:
    proxy = parse_proxy_url("http://alice:hunter2@h:1")
    assert "hunter2" not in repr(proxy)
    with pytest.raises(ValueError) as info:
        parse_proxy_url("http://alice:hunter2@h:99999")
    assert "hunter2" not in str(info.value)


@given(st.text(min_size=1, max_size=20), st.text(max_size=20))
def test_credentials_survive_percent_encoding(username: str, password: str) -> None:
    proxy = parse_proxy_url(f"socks5://{quote(username, safe='')}:{quote(password, safe='')}@h:1")
    assert (proxy.username, proxy.password) == (username, password)
    again = parse_proxy_url(proxy.socks_url())
    assert (again.scheme, again.username, again.password) == ("socks5", username, password)


def test_socks_schemes_say_who_resolves_the_name() -> None:
    assert [parse_proxy_url(f"{s}://h:1").remote_dns for s in ("socks5", "socks5h", "socks4", "socks4a", "http")] == [
        False,
        True,
        False,
        True,
        True,
    ]
    assert parse_proxy_url("socks4a://h:1").socks_url() == "socks4://h:1"


def test_the_environment_names_the_proxy() -> None:
    env = {"http_proxy": "plain:1", "HTTPS_PROXY": "secure:2", "ALL_PROXY": "any:3"}
    assert proxy_for("ws://a/", FROM_ENVIRONMENT, env) == Proxy("http", "plain", 1)
    assert proxy_for("wss://a/", FROM_ENVIRONMENT, env) == Proxy("http", "secure", 2)
    assert proxy_for("wss://a/", FROM_ENVIRONMENT, {"ALL_PROXY": "socks5://any:3"}) == Proxy("socks5", "any", 3)
    # The lower-case name wins; an empty value counts as unset.
    assert proxy_for("ws://a/", FROM_ENVIRONMENT, {"http_proxy": "low:1", "HTTP_PROXY": "up:2"}).host == "low"  # type: ignore[union-attr]
    assert proxy_for("ws://a/", FROM_ENVIRONMENT, {"http_proxy": " ", "HTTP_PROXY": "up:2"}).host == "up"  # type: ignore[union-attr]
    assert proxy_for("ws://a/", FROM_ENVIRONMENT, {}) is None
    assert proxy_for("ws://a/", FROM_ENVIRONMENT, {"https_proxy": "secure:2"}) is None
    assert proxy_for("ws://a/", FROM_ENVIRONMENT, {**env, "no_proxy": "a"}) is None
    assert proxy_for("ws://a/", FROM_ENVIRONMENT, {**env, "NO_PROXY": "*"}) is None


def test_loopback_never_goes_through_a_proxy_from_the_environment() -> None:
    env = {"all_proxy": "p:1"}
    for url in ("ws://localhost:8000/", "ws://LOCALHOST./", "ws://app.localhost/", "wss://127.0.0.9/", "ws://[::1]/"):
        assert proxy_for(url, FROM_ENVIRONMENT, env) is None
        assert proxy_for(url, "p:1", env) == Proxy("http", "p", 1)  # an explicit proxy still applies
    for url in ("ws://localhost.example/", "ws://128.0.0.1/", "ws://[::2]/"):
        assert proxy_for(url, FROM_ENVIRONMENT, env) == Proxy("http", "p", 1)


def test_an_explicit_proxy_or_none_overrides_the_environment() -> None:
    env = {"http_proxy": "plain:1", "no_proxy": "*"}
    assert proxy_for("ws://a/", "socks5://s:5", env) == Proxy("socks5", "s", 5)
    assert proxy_for("ws://a/", None, {"http_proxy": "plain:1"}) is None
    with pytest.raises(TypeError, match="proxy must be"):
        proxy_for("ws://a/", 42, env)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("example.com", 80, "example.com", True),
        ("a.b.example.com", 80, ".example.com", True),
        ("a.example.com", 80, "*.example.com", True),
        ("EXAMPLE.com.", 80, "example.COM", True),
        ("notexample.com", 80, "example.com", False),
        ("example.com", 80, "example.com:8080", False),
        ("example.com", 8080, "other, example.com:8080", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.3", True),
        ("11.1.2.3", 80, "10.0.0.0/8 example.com", False),
        ("10.1.2.3", 80, "1.2.3", False),  # an address is no name: no suffix match
        ("::1", 80, "[::1]:80", True),
        ("::1", 81, "[::1]:80", False),
        ("::1", 80, "::1", True),
        ("fe80::1", 80, "fe80::/16", True),
        ("anything", 1, "*", True),
        ("anything", 1, "", False),
        ("anything", 1, ",, .,", False),
    ],
)
def test_no_proxy(host: str, port: int, no_proxy: str, bypassed: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypassed


@given(DOMAIN, DOMAIN, st.lists(DOMAIN, max_size=3), st.sampled_from([",", " ", ", "]))
def test_no_proxy_matches_a_domain_and_its_subdomains_only(sub: str, domain: str, others: list[str], sep: str) -> None:
    entries = sep.join([*others, domain])
    assert bypasses_proxy(domain, 443, entries)
    assert bypasses_proxy(f"{sub}.{domain}", 443, entries)
    if not any(f"x{sub}{domain}" == o or f"x{sub}{domain}".endswith("." + o) for o in others):
        assert not bypasses_proxy(f"x{sub}{domain}", 443, entries)


# ------------------------------------------------------------------ the CONNECT exchange


def test_the_connect_request() -> None:
    tunnel = HTTPTunnel(parse_proxy_url("http://al%3Aice:pw@p:1"), "example.com", 443)
    credentials = base64.b64encode(b"al:ice:pw").decode()
    assert tunnel.data_to_send() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
        b"Proxy-Authorization: Basic " + credentials.encode() + b"\r\n\r\n"
    )
    assert HTTPTunnel(parse_proxy_url("p:1"), "::1", 80).data_to_send() == (
        b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"
    )


@given(st.data())
def test_the_answer_in_any_split(data: st.DataObject) -> None:
    answer = b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(1, len(answer) - 1), max_size=5, unique=True)))
    tunnel = HTTPTunnel(parse_proxy_url("p:1"), "h", 80)
    pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)])]
    assert [tunnel.receive_data(piece) for piece in pieces] == [False] * (len(pieces) - 1) + [True]


def test_a_refusal_carries_the_proxys_answer() -> None:
    tunnel = HTTPTunnel(parse_proxy_url("p:1"), "h", 80)
    with pytest.raises(ProxyError) as info:
        tunnel.receive_data(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\nlog in")
    error = info.value
    assert (error.status, error.headers, error.body) == (407, [("Proxy-Authenticate", "Basic")], b"log in")
    assert str(error) == "the proxy p:1 refused CONNECT: 407 Proxy Authentication Required"
    assert not should_retry(error)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"", "closed the connection before answering"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed HTTP"),
        (b"HTTP/1.1 200 OK\r\n\r\nearly", "sent bytes after its answer"),
    ],
)
def test_a_broken_answer_is_a_502(answer: bytes, problem: str) -> None:
    with pytest.raises(ProxyError, match=problem) as info:
        HTTPTunnel(parse_proxy_url("p:1"), "h", 80).receive_data(answer)
    assert info.value.status == 502 and should_retry(info.value)


def test_an_endless_answer_is_bounded() -> None:
    tunnel = HTTPTunnel(parse_proxy_url("p:1"), "h", 80, HTTPLimits(max_line=100))
    with pytest.raises(ProxyError, match="malformed HTTP"):
        tunnel.receive_data(b"HTTP/1.1 200 " + b"x" * 200)


def test_socks_refusals_as_http_statuses() -> None:
    proxy = parse_proxy_url("socks5://s:1")
    # python-socks' own messages for the cases.
    assert socks_refusal(proxy, "Username and password authentication failure", None).status == 407
    assert socks_refusal(proxy, "No acceptable authentication methods were offered", None).status == 407
    assert socks_refusal(proxy, "Connection not allowed by ruleset", 2).status == 403
    assert socks_refusal(proxy, "Connection refused", 5).status == 502
    assert socks_refusal(proxy, "Connection closed unexpectedly", None).status == 502
    assert str(socks_refusal(proxy, "Connection refused", 5)) == "the SOCKS proxy s:1 refused: Connection refused"


# ------------------------------------------------------------------ redirects


def redirect(status: int, *locations: str) -> InvalidHandshake:
    return InvalidHandshake("redirected", status, [("Location", value) for value in locations], b"moved")


def test_redirect_targets() -> None:
    here = "wss://a.example/chat?x=1"
    assert redirect_target(here, redirect(301, "wss://b.example/c"), 0, 10) == "wss://b.example/c"
    assert redirect_target(here, redirect(302, "/other?y=2#frag"), 0, 10) == "wss://a.example/other?y=2"
    assert redirect_target(here, redirect(303, "room"), 0, 10) == "wss://a.example/room"
    assert redirect_target(here, redirect(307, "https://b.example:8443/"), 0, 10) == "wss://b.example:8443/"
    assert redirect_target("ws://a/", redirect(308, "http://b/"), 0, 10) == "ws://b/"
    assert redirect_target("ws://a/", redirect(308, "wss://b/"), 0, 10) == "wss://b/"


def test_what_is_not_a_redirect() -> None:
    for status in (300, 304, 305, 400, 503):
        assert redirect_target("ws://a/", redirect(status, "ws://b/"), 0, 10) is None
    assert redirect_target("ws://a/", ProxyError("proxy", 302, [("Location", "ws://b/")]), 0, 10) is None


@pytest.mark.parametrize(
    ("url", "error", "hops", "problem"),
    [
        ("wss://a/", redirect(301, "ws://a/"), 0, "from wss:// to ws://"),
        ("wss://a/", redirect(301, "http://a/"), 0, "from wss:// to ws://"),
        ("ws://a/", redirect(302, "ws://b/"), 3, "more than max_redirects=3"),
        ("ws://a/", redirect(302), 0, "expected one Location field, got 0"),
        ("ws://a/", redirect(302, "/x", "/y"), 0, "got 2"),
        ("ws://a/", redirect(302, "ftp://b/"), 0, "not an http"),
        ("ws://a/", redirect(302, "ws://u@b/"), 0, "user info"),
    ],
)
def test_redirects_refused(url: str, error: InvalidHandshake, hops: int, problem: str) -> None:
    with pytest.raises(InvalidHandshake, match=problem) as info:
        redirect_target(url, error, hops, 3)
    assert (info.value.status, info.value.headers, info.value.body) == (error.status, error.headers, b"moved")


# ------------------------------------------------------------------ backoff and retries


def test_backoff_options_are_checked() -> None:
    for kwargs, problem in [
        ({"initial": -1}, "initial must be >= 0"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"initial": 5, "max_delay": 1}, "max_delay"),
        ({"jitter": 1.5}, "jitter must be in"),
        ({"reset_after": -1}, "reset_after"),
        ({"initial": math.nan}, "finite"),
        ({"factor": "2"}, "finite number"),
        ({"jitter": True}, "finite number"),
    ]:
        with pytest.raises(ValueError, match=problem):
            Backoff(**kwargs)  # type: ignore[arg-type]


@given(
    st.floats(0.001, 10),
    st.floats(1, 4),
    st.floats(0, 1, exclude_max=True),
    st.lists(st.floats(0, 1, exclude_max=True), min_size=2, max_size=40),
)
def test_delays_grow_to_the_cap_within_the_jitter(
    initial: float, factor: float, jitter: float, draws: list[float]
) -> None:
    backoff = Backoff(initial, factor, max_delay=60, jitter=jitter)
    delays = [backoff.delay(attempt, draw) for attempt, draw in enumerate(draws)]
    for attempt, delay in enumerate(delays):
        base = min(60, initial * factor**attempt)
        assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9
    if jitter <= 1 - 1 / factor:
        # Jitter no wider than one step of growth keeps the delays in order, whatever the draws.
        assert all(
            later >= earlier - 1e-9 for earlier, later in itertools.pairwise(delays) if later < 60 * (1 - jitter)
        )


def test_a_huge_attempt_number_waits_the_cap() -> None:
    assert Backoff(1.0, 2.0, 30.0, jitter=0).delay(5000, 0.5) == 30  # float powers overflow, int ones do not


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError("timed out after 10 s"), True),
        (ConnectionClosed(1006, "connection lost during the opening handshake"), True),
        (InvalidHandshake("expected 101", 503), True),
        (InvalidHandshake("expected 101", 500), True),
        (ProxyError("bad gateway", 502), True),
        (InvalidHandshake("expected 101", 403), False),
        (InvalidHandshake("expected 101", 404), False),
        (InvalidHandshake("Sec-WebSocket-Accept is missing"), False),
        (ProxyError("credentials", 407), False),
        (HTTPParseError("HTTP/2.0 is not supported", status=505), False),
        (ValueError("not a WebSocket URL"), False),
    ],
)
def test_what_is_retried(error: BaseException, retried: bool) -> None:
    assert should_retry(error) is retried


def test_a_reconnection_counts_failures_and_quick_losses() -> None:
    reconnection = Reconnection(Backoff(1, 2, 100, jitter=0, reset_after=30), draw=lambda: 0.0)
    assert [reconnection.failed(OSError()) for _ in range(3)] == [1, 2, 4]
    assert reconnection.failed(InvalidHandshake("no", 403)) is None
    reconnection.opened(100.0)
    assert reconnection.lost(101.0) == 8  # dropped at once: one more failure
    reconnection.opened(200.0)
    assert reconnection.lost(230.0) == 1  # it served for reset_after: start again
    assert reconnection.failed(OSError()) == 2


def test_retry_on_decides() -> None:
    reconnection = Reconnection(Backoff(jitter=0), retry_on=lambda error: isinstance(error, ValueError))
    assert reconnection.failed(ValueError()) == 1.0
    assert reconnection.failed(OSError()) is None


# ------------------------------------------------------------------ timeouts


def test_timeout_messages() -> None:
    assert timeout_message(Phase.TCP_CONNECT, 10, "example.com", 443) == (
        "timed out after 10 s (open_timeout) connecting to example.com:443"
    )
    assert timeout_message(Phase.TLS_HANDSHAKE, 0.25, "::1", 8443) == (
        "timed out after 0.25 s (open_timeout) in the TLS handshake with [::1]:8443"
    )
    assert timeout_message(Phase.PROXY_CONNECT, 3, "p", 1).endswith("connecting to the proxy p:1")
