"""What a server logs when accept() fails: the failure in words, once per run of failures."""

from __future__ import annotations

import errno
import logging
import os
import resource

import pytest

from wsstack.session import ACCEPT_RETRY, AcceptFailures
from wsstack.session.accept import that_connection_only


def failure(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def warnings_for(exc: OSError, caplog: pytest.LogCaptureFixture) -> list[str]:
    failures = AcceptFailures()
    with caplog.at_level(logging.INFO, logger="wsstack"):
        failures.failed(exc, 10.0)
        failures.failed(exc, 10.1)  # the same run: not logged again
        assert failures.failing
        failures.caught_up(12.5)
        assert not failures.failing
    return [record.getMessage() for record in caplog.records]


def test_out_of_the_process_limit_names_rlimit_nofile(caplog: pytest.LogCaptureFixture) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    warning, recovered = warnings_for(failure(errno.EMFILE), caplog)
    assert f"too many open files (limit {soft} per process, RLIMIT_NOFILE)" in warning
    assert f"retrying every {ACCEPT_RETRY:g} s" in warning
    assert recovered.startswith("accept() works again") and "after 2.5 s and 2 failed attempts" in recovered


def test_out_of_the_system_limit_names_file_max(caplog: pytest.LogCaptureFixture) -> None:
    with open("/proc/sys/fs/file-max") as file:
        limit = int(file.read())
    warning, _ = warnings_for(failure(errno.ENFILE), caplog)
    assert f"too many open files in the system (limit {limit}, fs.file-max)" in warning


@pytest.mark.parametrize("code", [errno.ENOBUFS, errno.ENOMEM])
def test_out_of_memory_says_so_with_the_errno(code: int, caplog: pytest.LogCaptureFixture) -> None:
    warning, _ = warnings_for(failure(code), caplog)
    assert f"out of memory for a new socket ({errno.errorcode[code]}: {os.strerror(code)})" in warning


def test_another_failure_is_logged_as_the_system_says_it(caplog: pytest.LogCaptureFixture) -> None:
    exc = failure(errno.EBADF)
    assert not that_connection_only(exc)  # the listening socket itself is broken: pause, do not spin
    warning, _ = warnings_for(exc, caplog)
    assert f"accept() failed: {exc};" in warning


def test_a_connection_reset_before_accept_loses_only_that_connection() -> None:
    assert that_connection_only(failure(errno.ECONNABORTED))
    assert not that_connection_only(failure(errno.EMFILE))
