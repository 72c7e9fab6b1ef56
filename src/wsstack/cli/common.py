"""What the subcommands share: one-line usage errors for bad values, one-line reports of a server that cannot start.

Every error of ``python -m wsstack`` is one line on stderr. A value the
command cannot use (a URL that is not ws:// or wss://, a port outside 0 to
65535) is a usage error, exit status 2, reported by argparse before anything
runs; a failure of the system (a port already in use, a host that does not
resolve, a connection refused) is a runtime error, exit status 1, logged
through the ``wsstack`` logger like the command's other news.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable
from typing import NoReturn

from ..handshake import parse_ws_url
from ..workers import WorkerError

__all__ = ["OneLineParser", "add_workers", "listen_address", "port", "seconds", "serve", "workers", "ws_url"]

logger = logging.getLogger("wsstack")

#: Exit status of a runtime error (argparse's usage errors are 2).
RUNTIME_ERROR = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors on one line (its default prints the usage first); exit status 2 as before."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def port(text: str) -> int:
    """A TCP port to bind, 0 for any free one: argparse's ``type``, so a bad value is a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0-65535")
    return value


def count(text: str, noun: str, negative: str) -> int:
    """A whole number of ``noun``, 0 or more; ``negative`` (formatted with ``value``) answers one below 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of {noun}: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(negative.format(value=value))
    return value


def workers(text: str) -> int:
    """A number of worker processes, 0 for one per CPU."""
    return count(text, "workers", "{value} workers: use 0 (one per CPU) or more")


def add_workers(parser: argparse.ArgumentParser) -> None:
    """``--workers N``, the same on every server command."""
    parser.add_argument(
        "--workers",
        type=workers,
        default=None,
        metavar="N",
        help="serve from N processes on one port (SO_REUSEPORT, Linux), 0 for one per CPU (default: this process)",
    )


def seconds(text: str) -> float:
    """A duration of 0 seconds or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds of 0 or more")
    return value


def ws_url(text: str) -> str:
    """A ws:// or wss:// URL the client can connect to, checked before connecting."""
    try:
        parse_ws_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; use ws://host[:port]/path or wss://...") from None
    return text


def listen_address(host: str, number: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"


def serve(run: Callable[[], None], host: str, number: int) -> int:
    """Run a server until Ctrl-C; a failure to bind (in use, no such address) is one logged line and status 1.

    So are workers that cannot run here or that kept dying (``WorkerError``).
    """
    try:
        run()
    except WorkerError as exc:
        logger.error("%s", exc)
        return RUNTIME_ERROR
    except OSError as exc:
        # The errno's own words: the loops wrap them in messages of their own, each differently.
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        logger.error("cannot listen on %s: %s", listen_address(host, number), reason)
        return RUNTIME_ERROR
    return 0
