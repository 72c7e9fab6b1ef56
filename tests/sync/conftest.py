"""Fixtures for the threaded transport's tests: an echo server, TLS contexts, the selectors fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import wsstack.sync.client as client_module
from sync_helpers import STEP, TLSContexts, echo_server, serving, tls_contexts
from wsstack.sync import reactor as reactor_module


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
