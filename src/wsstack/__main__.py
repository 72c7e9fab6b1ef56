"""``python -m wsstack``: a chat demo with a browser page, an echo server, an interactive client.

Logging goes through the ``wsstack`` logger to stderr, so that the client's
stdout carries only what the server sent. Every error is one line on stderr,
with exit status 2 for a usage error and 1 for a runtime one (``cli.common``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .cli import client, demo, echo
from .cli.common import OneLineParser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m wsstack",
        description="wsstack from the command line: a chat demo, an echo server, an interactive client.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True)
    for command in (demo, echo, client):
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
