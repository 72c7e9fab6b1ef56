"""The client features of both transports against real peers on 127.0.0.1: refusals, timeouts, redirects,
reconnection, HTTP CONNECT and SOCKS5 proxies.

Every test runs with ``wsstack.asyncio.connect`` (on asyncio's loop and on
uvloop) and with ``wsstack.sync.connect`` (``reconnect`` for the reconnecting loop): the two
make the same decisions (``wsstack.client_policy``) and must show the same
behaviour. The peers are in ``client_peers``.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from client_peers import (
    STEP,
    ConnectProxy,
    ThreadServer,
    answering,
    read_head,
    redirecting_server,
    silent,
    socks5_proxy,
    upgrading_then_dropping,
)
from sync_helpers import TLSContexts, echo_server, serving, tls_contexts
from waiting import bounded
from wsstack.asyncio import connect as async_connect
from wsstack.client_policy import Backoff, should_retry
from wsstack.errors import ConnectionClosed, InvalidHandshake, ProxyError
from wsstack.options import HTTPLimits, Options
from wsstack.sync import connect as sync_connect
from wsstack.sync import reconnect as sync_reconnect

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
QUICK = Options(open_timeout=0.5)

T = TypeVar("T")


@pytest.fixture(params=["asyncio", "uvloop", "sync"])
def transport(request: pytest.FixtureRequest) -> str:
    """asyncio's client on the standard event loop and on uvloop (whose sockets and transports differ), the sync client."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


def run(transport: str, main: Coroutine[Any, Any, T]) -> T:
    if transport == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy settings must not reach the tests; each test sets what it needs."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def tls() -> TLSContexts:
    return tls_contexts()


@pytest.fixture
def echo_url() -> Iterator[str]:
    with serving(echo_server()) as url:
        yield url


def echo(transport: str, url: str, message: str = "hello", **kwargs: Any) -> object:
    """Connect, send ``message``, return the answer, close."""
    if transport == "sync":
        with sync_connect(url, **kwargs) as ws:
            ws.send(message)
            return ws.recv(timeout=STEP)

    async def main() -> object:
        async with async_connect(url, **kwargs) as ws:
            await ws.send(message)
            return await asyncio.wait_for(ws.recv(), STEP)

    return run(transport, main())


def failure(transport: str, url: str, **kwargs: Any) -> BaseException:
    """The error connecting raises."""
    try:
        echo(transport, url, **kwargs)
    except Exception as exc:
        return exc
    pytest.fail("the connection opened")


def reconnecting(transport: str, url: str, count: int, **kwargs: Any) -> list[float]:
    """Take ``count`` connections from the reconnecting loop, reading each to its end; when each came."""
    times: list[float] = []
    if transport == "sync":
        for ws in sync_reconnect(url, **kwargs):
            times.append(time.monotonic())
            if len(times) == count:
                ws.close()
                break
            assert ws.recv(timeout=STEP) is None  # the server dropped it
        return times

    async def main() -> None:
        async for ws in async_connect(url, **kwargs):
            times.append(time.monotonic())
            if len(times) == count:
                await ws.close()
                break
            assert await asyncio.wait_for(ws.recv(), STEP) is None

    run(transport, main())
    return times


# ------------------------------------------------------------------ refusals


@bounded(30)
def test_a_refusal_carries_the_status_headers_and_body(transport: str) -> None:
    answer = b"HTTP/1.1 403 Forbidden\r\nX-Reason: banned\r\nContent-Length: 11\r\n\r\nnot for you"
    with ThreadServer(answering(answer)) as server:
        error = failure(transport, server.ws_url())
    assert isinstance(error, InvalidHandshake)
    assert error.status == 403
    assert ("X-Reason", "banned") in error.headers
    assert error.body == b"not for you"


@bounded(30)
def test_a_body_delimited_by_the_close_is_read_to_the_close(transport: str) -> None:
    answer = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\r\n" + b"log in first " * 100
    with ThreadServer(answering(answer)) as server:
        error = failure(transport, server.ws_url())
    assert isinstance(error, InvalidHandshake)
    assert (error.status, error.headers) == (401, [("WWW-Authenticate", "Bearer")])
    assert error.body == b"log in first " * 100


@bounded(30)
@pytest.mark.parametrize("framing", [b"", b"Content-Length: 50000\r\n"])
def test_the_body_kept_is_bounded(transport: str, framing: bytes) -> None:
    answer = b"HTTP/1.1 403 Forbidden\r\n" + framing + b"\r\n" + b"x" * 50000
    options = Options(http_limits=HTTPLimits(max_body_size=1000))
    with ThreadServer(answering(answer)) as server:
        error = failure(transport, server.ws_url(), options=options)
    assert isinstance(error, InvalidHandshake)
    assert (error.status, error.body) == (403, b"x" * 1000)


@bounded(30)
def test_a_body_that_never_ends_is_cut_by_the_open_timeout(transport: str) -> None:
    answer = b"HTTP/1.1 503 Service Unavailable\r\n\r\ncome back"
    with ThreadServer(answering(answer, then_close=False)) as server:
        error = failure(transport, server.ws_url(), options=QUICK)
    assert isinstance(error, InvalidHandshake)
    assert (error.status, error.body) == (503, b"come back")


# ------------------------------------------------------------------ timeouts


@bounded(30)
def test_a_silent_server_times_out_saying_what_it_waited_for(transport: str) -> None:
    with ThreadServer(silent) as server:
        started = time.monotonic()
        error = failure(transport, server.ws_url(), options=QUICK)
        assert time.monotonic() - started < 3
    assert type(error) is TimeoutError
    assert str(error) == (
        f"timed out after 0.5 s (open_timeout) waiting for the server's opening handshake answer "
        f"from 127.0.0.1:{server.port}"
    )


@bounded(30)
def test_a_silent_tls_server_times_out_in_the_tls_handshake(transport: str, tls: TLSContexts) -> None:
    with ThreadServer(silent) as server:
        error = failure(transport, server.ws_url(scheme="wss"), options=QUICK, ssl=tls.client)
    assert type(error) is TimeoutError
    assert str(error) == f"timed out after 0.5 s (open_timeout) in the TLS handshake with 127.0.0.1:{server.port}"


@bounded(30)
def test_a_silent_proxy_times_out_waiting_for_the_tunnel(transport: str) -> None:
    with ThreadServer(silent) as proxy:
        error = failure(transport, "ws://example.invalid/", options=QUICK, proxy=f"http://127.0.0.1:{proxy.port}")
    assert type(error) is TimeoutError
    assert str(error) == (
        f"timed out after 0.5 s (open_timeout) waiting for the proxy 127.0.0.1:{proxy.port} to open a tunnel"
    )


# ------------------------------------------------------------------ redirects


@bounded(30)
def test_redirects_are_followed_absolute_and_relative(transport: str) -> None:
    server = redirecting_server()
    with serving(server) as url:
        base = url.removesuffix("/ws")
        # 307 with an http:// Location (ws:// is meant), then 308 to a relative one, then the echo.
        hop = f"{base.replace('ws://', 'http://')}/redirect?status=308&to=/ws"
        for status in (301, 302, 303, 307, 308):
            first = f"{base}/redirect?status={status}&to={hop.replace('&', '%26')}"
            assert echo(transport, first, "followed") == "followed"


@bounded(30)
def test_redirects_stop_at_max_redirects(transport: str) -> None:
    with serving(redirecting_server()) as url:
        loop = url.replace("/ws", "/redirect?status=302&to=/redirect%3Fstatus%3D302%26to%3D/ws")
        assert echo(transport, loop, max_redirects=2) == "hello"
        error = failure(transport, loop, max_redirects=1)
    assert isinstance(error, InvalidHandshake) and error.status == 302
    assert "more than max_redirects=1 redirects" in str(error)


@bounded(30)
def test_a_redirect_from_wss_to_ws_is_refused(transport: str, tls: TLSContexts) -> None:
    with serving(echo_server()) as plain, serving(redirecting_server(ssl=tls.server), "localhost") as secure:
        url = secure.replace("ws://", "wss://").replace("/ws", f"/redirect?status=301&to={plain}")
        error = failure(transport, url, ssl=tls.client)
    assert isinstance(error, InvalidHandshake) and error.status == 301
    assert "from wss:// to ws://" in str(error)


# ------------------------------------------------------------------ reconnecting


def intervals(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@bounded(60)
def test_reconnects_after_drops_with_growing_delays(transport: str) -> None:
    backoff = Backoff(initial=0.05, factor=2, max_delay=1, jitter=0.5)
    with ThreadServer(upgrading_then_dropping) as server:
        times = reconnecting(transport, server.ws_url(), 4, backoff=backoff)
    assert server.accepted == 4
    waits = intervals(times)
    # Each wait is at least the lower jitter bound of its delay: 0.025, 0.05, 0.1.
    for wait, floor in zip(waits, (0.025, 0.05, 0.1)):
        assert wait >= floor
    assert waits[2] > waits[0]


@bounded(30)
def test_the_loop_closes_the_connection_it_handed_out_before_the_next(transport: str, echo_url: str) -> None:
    backoff = Backoff(initial=0.01)
    seen: list[Any] = []
    if transport == "sync":
        for ws in sync_reconnect(echo_url, backoff=backoff):
            seen.append(ws)
            if len(seen) == 2:
                assert ws.is_open
                ws.close()
                break
    else:

        async def main() -> None:
            async for ws in async_connect(echo_url, backoff=backoff):
                seen.append(ws)
                if len(seen) == 2:
                    assert ws.is_open
                    await ws.close()
                    break

        run(transport, main())
    assert [ws.close_code for ws in seen] == [1000, 1000]


@bounded(60)
def test_reconnects_until_a_refusing_port_accepts(transport: str) -> None:
    with ThreadServer(silent) as placeholder:
        port = placeholder.port  # a port nobody listens on once this closes
    attempts: list[float] = []
    servers: list[ThreadServer] = []

    def retry_on(error: BaseException) -> bool:
        attempts.append(time.monotonic())
        assert isinstance(error, ConnectionRefusedError)
        if len(attempts) == 3:
            servers.append(ThreadServer(upgrading_then_dropping, port))
        return should_retry(error)

    backoff = Backoff(initial=0.05, factor=3, max_delay=1, jitter=0.2)
    try:
        times = reconnecting(transport, f"ws://127.0.0.1:{port}/ws", 1, backoff=backoff, retry_on=retry_on)
    finally:
        for server in servers:
            server.close()
    waits = intervals([*attempts, *times])
    # Delays 0.05, 0.15, 0.45, each at least 80% of itself.
    for wait, floor in zip(waits, (0.04, 0.12, 0.36)):
        assert wait >= floor
    assert waits[0] < waits[1] < waits[2]


@bounded(30)
def test_a_4xx_answer_ends_the_reconnecting_loop(transport: str) -> None:
    answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"
    with ThreadServer(answering(answer)) as server, pytest.raises(InvalidHandshake) as info:
        reconnecting(transport, server.ws_url(), 1, backoff=Backoff(initial=0.01))
    assert (info.value.status, info.value.body, server.accepted) == (403, b"no", 1)


@bounded(30)
def test_a_5xx_answer_is_retried(transport: str) -> None:
    busy = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy"

    def handle(sock: Any, index: int) -> None:
        if index < 2:
            answering(busy)(sock, index)
        else:
            upgrading_then_dropping(sock, index)

    with ThreadServer(handle) as server:
        times = reconnecting(transport, server.ws_url(), 1, backoff=Backoff(initial=0.01, max_delay=0.1))
    assert (len(times), server.accepted) == (1, 3)


@bounded(30)
def test_a_lost_handshake_is_retried_and_reported_alike(transport: str) -> None:
    def handle(sock: Any, index: int) -> None:
        if index == 0:
            read_head(sock)  # then an orderly close, before answering
        elif index == 1:
            return  # a close with the request unread: a reset
        else:
            upgrading_then_dropping(sock, index)

    with ThreadServer(handle) as server:
        for _ in range(2):
            error = failure(transport, server.ws_url())
            assert isinstance(error, ConnectionClosed) and error.code == 1006
        times = reconnecting(transport, server.ws_url(), 1, backoff=Backoff(initial=0.01))
    assert len(times) == 1


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"url": "http://127.0.0.1/"}, "not a WebSocket URL"),
        ({"url": "ws://127.0.0.1/", "proxy": "ftp://p:1"}, "scheme 'ftp'"),
        ({"url": "ws://127.0.0.1/", "max_redirects": -1}, "max_redirects must be"),
    ],
)
def test_bad_arguments_fail_before_any_attempt(transport: str, kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        if transport == "sync":
            sync_reconnect(**kwargs)
        else:
            async_connect(**kwargs)


# ------------------------------------------------------------------ HTTP CONNECT proxies


@bounded(30)
def test_through_an_http_connect_proxy(transport: str, echo_url: str) -> None:
    with ConnectProxy() as proxy:
        assert echo(transport, echo_url, "tunnelled", proxy=proxy.proxy_url) == "tunnelled"
        # Without a deadline, each step simply waits.
        assert echo(transport, echo_url, options=Options(open_timeout=None), proxy=proxy.proxy_url) == "hello"
    assert proxy.targets == [echo_url.split("/")[2]] * 2


@bounded(30)
def test_proxy_basic_auth_and_its_407(transport: str, echo_url: str) -> None:
    with ConnectProxy(("alice", "s3cr:et")) as proxy:
        url = proxy.proxy_url.replace("s3cr:et", "s3cr%3Aet")
        assert echo(transport, echo_url, "authorized", proxy=url) == "authorized"
        error = failure(transport, echo_url, proxy=url.replace("alice", "mallory"))
    assert isinstance(error, ProxyError)
    assert error.status == 407
    assert ("Proxy-Authenticate", 'Basic realm="test"') in error.headers
    assert error.body == b"proxy credentials required"
    assert "***" not in str(error) and "s3cr" not in str(error)


@bounded(30)
def test_wss_through_the_tunnel(transport: str, tls: TLSContexts) -> None:
    with serving(echo_server(ssl=tls.server), "localhost") as url, ConnectProxy() as proxy:
        url = url.replace("ws://", "wss://")
        assert echo(transport, url, "secret", ssl=tls.client, proxy=proxy.proxy_url) == "secret"
    assert proxy.targets == [url.split("/")[2]]


@bounded(30)
def test_the_proxy_comes_from_the_environment(transport: str, echo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = echo_url.replace("127.0.0.1", "echo.test")  # a name only the proxy can resolve
    with ConnectProxy() as proxy:
        # No variables: no proxy.
        error = failure(transport, remote)
        assert isinstance(error, socket.gaierror) and proxy.targets == []
        monkeypatch.setenv("HTTP_PROXY", proxy.proxy_url)
        assert echo(transport, remote) == "hello"
        assert proxy.targets == [remote.split("/")[2]]
        # Loopback never goes through a proxy from the environment.
        assert echo(transport, echo_url) == "hello"
        assert echo(transport, echo_url.replace("127.0.0.1", "localhost")) == "hello"
        assert len(proxy.targets) == 1
        # https_proxy is for wss:// only; all_proxy stands in for a missing http_proxy.
        monkeypatch.delenv("HTTP_PROXY")
        monkeypatch.setenv("https_proxy", "http://127.0.0.1:1")
        assert isinstance(failure(transport, remote), socket.gaierror)
        monkeypatch.setenv("all_proxy", proxy.proxy_url)
        assert echo(transport, remote) == "hello"
        assert len(proxy.targets) == 2
        # no_proxy, and proxy=None, go direct.
        monkeypatch.setenv("no_proxy", "example.com, .test")
        assert isinstance(failure(transport, remote), socket.gaierror)
        monkeypatch.delenv("no_proxy")
        assert isinstance(failure(transport, remote, proxy=None), socket.gaierror)
        assert len(proxy.targets) == 2


@bounded(30)
def test_a_redirect_goes_through_the_proxy_that_applies(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(redirecting_server()) as url, ConnectProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.proxy_url)
        # The first hop is direct (loopback), the second, to a name only the proxy knows, through the proxy.
        port = url.split(":")[2].split("/")[0]
        first = url.replace("/ws", f"/redirect?status=302&to=ws://echo.test:{port}/ws")
        assert echo(transport, first, "hopped") == "hopped"
    assert proxy.targets == [f"echo.test:{port}"]


@bounded(30)
def test_a_proxy_that_cannot_reach_the_server_answers_502_and_is_retried(transport: str) -> None:
    with ThreadServer(silent) as placeholder:
        port = placeholder.port
    with ConnectProxy() as proxy:
        error = failure(transport, f"ws://127.0.0.1:{port}/", proxy=proxy.proxy_url)
    assert isinstance(error, ProxyError) and error.status == 502
    assert should_retry(error)


# ------------------------------------------------------------------ SOCKS5 proxies


@bounded(60)
def test_through_a_socks5_proxy(transport: str, echo_url: str, tls: TLSContexts) -> None:
    with socks5_proxy() as proxy:
        assert echo(transport, echo_url, "socks", proxy=proxy) == "socks"
        assert echo(transport, echo_url.replace("127.0.0.1", "localhost"), proxy=proxy.replace("5:", "5h:")) == "hello"
        with serving(echo_server(ssl=tls.server), "localhost") as url:
            secure = url.replace("ws://", "wss://")
            assert echo(transport, secure, "over tls", ssl=tls.client, proxy=proxy) == "over tls"


@bounded(30)
def test_socks_without_python_socks_says_what_to_install(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)  # as if the extra were not installed
    error = failure(transport, "ws://127.0.0.1:9/", proxy="socks5://user:secret@127.0.0.1:1080")
    assert isinstance(error, ImportError)
    assert str(error) == "Proxy(socks5://user:***@127.0.0.1:1080) needs python-socks: pip install 'wsstack[socks]'"


@bounded(60)
def test_socks5_credentials(transport: str, echo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with socks5_proxy(("bob", "pw")) as proxy:
        monkeypatch.setenv("all_proxy", proxy)
        assert echo(transport, echo_url, "with credentials") == "with credentials"
        error = failure(transport, echo_url, proxy=proxy.replace(":pw@", ":wrong@"))
    # pproxy closes the connection instead of answering a failure status (RFC 1929 §2), which tells a client
    # nothing more than a network failure would: 502. A proxy that answers gets 407 (test_client_policy.py).
    assert isinstance(error, ProxyError) and error.status == 502
    assert f"the SOCKS proxy 127.0.0.1:{proxy.rsplit(':', 1)[1]} refused" in str(error)
    assert "wrong" not in str(error)
