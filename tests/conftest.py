"""Shared fixtures."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

REQUIRE_SPEEDUPS_ENV = "WSSTACK_REQUIRE_SPEEDUPS"


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
