"""Shared fixtures."""

from __future__ import annotations

import _thread
import os
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings

from redis_server import RedisServer

REQUIRE_SPEEDUPS_ENV = "WSSTACK_REQUIRE_SPEEDUPS"

# No per-example deadline (hypothesis's default is 200 ms): timing is the benchmarks' business, and on
# a shared 2-core machine a busy neighbour made a 0.6 ms example take 365 ms and fail a property test.
settings.register_profile("wsstack", deadline=None)
settings.load_profile("wsstack")


@pytest.fixture(scope="session")
def cspeedups() -> ModuleType:
    """The C implementation, for tests that compare it with pure Python.

    Without the built C module such tests are skipped, except where
    WSSTACK_REQUIRE_SPEEDUPS=1 says it must be there (CI): then they fail.
    """
    try:
        from wsstack import _cspeedups
    except ImportError as exc:
        message = f"the C speedups (wsstack._speedups) are not built: {exc}"
        if os.environ.get(REQUIRE_SPEEDUPS_ENV) == "1":
            pytest.fail(f"{message}; {REQUIRE_SPEEDUPS_ENV}=1 requires them")
        pytest.skip(f"{message}; set {REQUIRE_SPEEDUPS_ENV}=1 to make this an error")
    return _cspeedups


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, killed after the test (the hub's and the demo's tests)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


def pytest_configure(config: pytest.Config) -> None:
    """Trace the sync server's handler threads when coverage is measuring.

    Coverage follows new threads through ``threading.settrace``, which only
    ``threading.Thread`` honours; the sync server starts its handler threads
    with ``_thread.start_new_thread`` (server.py says why), so without this
    their lines would count as never run.
    """
    hook = threading.gettrace()
    if hook is None:
        return
    start = _thread.start_new_thread

    def start_traced(function: Callable[..., object], args: tuple[Any, ...], kwargs: Any = None) -> int:
        def run(*call_args: Any, **call_kwargs: Any) -> object:
            sys.settrace(hook)
            return function(*call_args, **call_kwargs)

        return start(run, args, kwargs or {})

    _thread.start_new_thread = start_traced
