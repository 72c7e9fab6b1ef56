"""A server out of descriptors: what both transports do when ``accept()`` fails for want of a resource.

A server that holds many long-lived connections meets its descriptor limit
sooner or later. Then ``accept()`` fails with ``EMFILE`` (the process's
limit) or ``ENFILE`` (the system's) until a connection closes, and the
listening socket stays readable meanwhile: a server that tries again at
every readiness spins, and one that logs every failure floods its log.
Here the server stops watching its listening socket for ``ACCEPT_RETRY``
seconds at a time, keeps serving the connections it has, and logs one line
when the trouble starts and one when it is over. The clients that arrive
meanwhile wait in the kernel's backlog (as long as it has room) and are
served once descriptors are free.

The trouble is over when the backlog is empty, not at the first
connection accepted: a server at its limit whose clients come and go
accepts one connection each time another closes, and would otherwise log
two lines for every one of them.
"""

from __future__ import annotations

import errno
import logging
import sys

__all__ = ["ACCEPT_RETRY", "AcceptFailures", "that_connection_only"]

logger = logging.getLogger("wsstack")

#: Seconds between attempts while ``accept()`` fails for want of a resource: short
#: enough that a freed descriptor soon serves a waiting client, long enough not to spin.
ACCEPT_RETRY = 0.1

_WANT_OF_RESOURCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Errors that concern only the connection accept() would have returned, which is gone: Linux's
# accept(2) says to treat these like EAGAIN and try again (network errors pending on the new
# socket), and ECONNABORTED is a client that reset before it was accepted.
_THAT_CONNECTION_ONLY = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "EPERM",  # a firewall rule refused that connection
    )
    if hasattr(errno, name)
)


def that_connection_only(exc: OSError) -> bool:
    """True when a failed ``accept()`` lost only the connection it was taking: take the next one."""
    return exc.errno in _THAT_CONNECTION_ONLY


class AcceptFailures:
    """One server's run of ``accept()`` failures: when it began, how many attempts failed, what to log."""

    __slots__ = ("_since", "_attempts")

    def __init__(self) -> None:
        self._since: float | None = None
        self._attempts = 0

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, exc: OSError, now: float) -> None:
        """``accept()`` failed with ``exc``, not one of ``that_connection_only``: stop accepting for ``ACCEPT_RETRY`` s.

        Logs the first failure of a run only. Besides want of a resource,
        that covers errors a listening socket should never give (it was
        shut down under the server, say): retrying at every readiness
        would spin and log thousands of lines a second.
        """
        if self._since is None:
            self._since = now
            self._attempts = 0
            logger.warning(
                "accept() failed: %s; retrying every %g s, still serving the open connections",
                _describe(exc),
                ACCEPT_RETRY,
            )
        self._attempts += 1

    def caught_up(self, now: float) -> None:
        """``accept()`` found the backlog empty, and so a descriptor free: the end of the run of failures.

        (Linux takes the descriptor before it looks at the backlog: out of
        descriptors, ``accept()`` fails with ``EMFILE`` even when nobody waits.)
        """
        logger.info(
            "accept() works again: every waiting client accepted, after %.1f s and %d failed attempts",
            now - (self._since or now),
            self._attempts,
        )
        self._since = None


def _describe(exc: OSError) -> str:
    """The failure in words, with the limit that was hit where the system says what it is."""
    if exc.errno == errno.EMFILE:
        limit = _process_limit()
        return "too many open files" + (f" (limit {limit} per process, RLIMIT_NOFILE)" if limit else "")
    if exc.errno == errno.ENFILE:
        limit = _system_limit()
        return "too many open files in the system" + (f" (limit {limit}, fs.file-max)" if limit else "")
    if exc.errno in _WANT_OF_RESOURCE:
        return f"out of memory for a new socket ({errno.errorcode.get(exc.errno or 0, exc.errno)}: {exc.strerror})"
    return str(exc)


def _process_limit() -> int | None:
    if sys.platform == "win32":
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _system_limit() -> int | None:
    try:
        with open("/proc/sys/fs/file-max") as file:
            return int(file.read())
    except (OSError, ValueError):
        return None
