"""Fixtures for the threaded transport's tests: an echo server, TLS contexts, reactors on either poller."""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Iterator

import pytest

import wsstack.sync.client as client_module
from sync_helpers import STEP, TLSContexts, echo_server, serving, tls_contexts
from wsstack.sync import reactor as reactor_module
from wsstack.sync.reactor import Reactor


@pytest.fixture
def echo_url() -> Iterator[str]:
    """The ws:// URL of an echo server with default options, shut down after the test."""
    with serving(echo_server()) as url:
        yield url


@pytest.fixture(scope="module")
def tls() -> TLSContexts:
    """Certificates from a throwaway authority (trustme): the system's trust store does not know it."""
    return tls_contexts()


@pytest.fixture
def no_epoll(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Reactors made during the test use ``selectors``; the clients' shared reactor too, made anew for it."""
    monkeypatch.setattr(reactor_module, "USE_EPOLL", False)
    monkeypatch.setattr(client_module, "_reactor", None)
    yield
    if client_module._reactor is not None:
        client_module._reactor.stop(STEP)
    client_module._reactor = None


@pytest.fixture(params=["epoll", "selectors"])
def reactor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reactor]:
    """A running reactor on epoll (thread-safe interest changes) or on ``selectors``; stopped, and its thread gone, after."""
    if request.param == "epoll" and not hasattr(select, "epoll"):
        reason = "epoll is Linux's; this system has selectors only"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI runs on Linux, so the epoll reactor must be tested")
        pytest.skip(reason)
    monkeypatch.setattr(reactor_module, "USE_EPOLL", request.param == "epoll")
    name = f"test-io-{request.node.name}"
    io = Reactor(name)
    assert io.threadsafe == (request.param == "epoll")
    io.start()
    yield io
    io.stop(STEP)
    assert not any(thread.name == name for thread in threading.enumerate()), "the I/O thread outlived stop()"


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected stream sockets, closed after the test (closing twice is harmless)."""
    left, right = socket.socketpair()
    with left, right:
        yield left, right
