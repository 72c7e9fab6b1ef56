"""``python -m wsstack client URL``: send each line of stdin as a text message, print what arrives.

Received messages go to stdout, one per line after "< " (binary ones as
hex), so the output can be piped on; connection news goes to stderr through
logging. At the end of input the client lingers (``--linger``, one second by
default) for the answers still on their way, then closes with 1000 and
exits once the server has answered, which lets a script drive it through a
pipe. Closing at once would lose them: a server that reads the last line and
the close frame together may not answer any more (RFC 6455 §5.5.1: no data
after a close). The linger ends early when the server closes first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from typing import TextIO

from ..asyncio import WebSocket, connect
from ..errors import ConnectionClosed, WebSocketError
from ..options import Options
from .common import seconds, ws_url

__all__ = ["format_message", "interact", "register"]

logger = logging.getLogger("wsstack")

#: How much of a binary message is shown, in bytes.
BINARY_PREVIEW = 64

#: Seconds to wait for answers after the end of input (``--linger``): a
#: local or nearby server answers within milliseconds, and a person at a
#: terminal hardly notices a second.
DEFAULT_LINGER = 1.0


def format_message(message: str | bytes) -> str:
    """One output line for a received message."""
    if isinstance(message, str):
        return f"< {message}"
    more = "..." if len(message) > BINARY_PREVIEW else ""
    return f"< [{len(message)} bytes] {message[:BINARY_PREVIEW].hex()}{more}"


def read_lines(stream: TextIO, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Runs in a daemon thread: blocking reads work for a terminal, a pipe and a file alike.

    The thread is a daemon rather than an executor job because a read blocked
    on a terminal cannot be interrupted, and the command must still be able
    to exit when the server closes first.
    """
    try:
        for line in stream:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)
    except RuntimeError:
        pass  # the session ended and its loop is closed: nobody is waiting for input


async def print_messages(ws: WebSocket) -> None:
    async for message in ws:
        print(format_message(message), flush=True)


async def send_lines(ws: WebSocket, lines: asyncio.Queue[str | None], linger: float) -> None:
    """Send lines until end of input, wait ``linger`` seconds for the answers, then close normally.

    A server that closes first ends the session, and ``interact`` cancels
    this task in its linger.
    """
    while (line := await lines.get()) is not None:
        try:
            await ws.send(line)
        except ConnectionClosed:
            return
    if linger > 0:
        await asyncio.sleep(linger)
    await ws.close(1000)


async def interact(
    url: str, options: Options, subprotocols: list[str], stdin: TextIO, linger: float = DEFAULT_LINGER
) -> int:
    """Run one session; the exit status is 0 after a normal close and 1 otherwise."""
    try:
        ws = await connect(url, options=options, subprotocols=subprotocols)
    except (OSError, asyncio.TimeoutError, WebSocketError) as exc:
        logger.error("cannot connect to %s: %s", url, exc or type(exc).__name__)
        return 1
    logger.info(
        "connected to %s (subprotocol: %s, extensions: %s)",
        url,
        ws.subprotocol or "none",
        ", ".join(ws.extensions) or "none",
    )
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=read_lines, args=(stdin, loop, lines), name="stdin", daemon=True).start()

    receiver = asyncio.create_task(print_messages(ws))
    sender = asyncio.create_task(send_lines(ws, lines, linger))
    # The receiver ends when the connection does, whoever closed it; the
    # sender may still be waiting for input that will never be sent.
    await receiver
    sender.cancel()
    await asyncio.wait([sender])
    await ws.wait_closed()
    code = ws.close_code
    logger.info("connection closed: %s %s", code, ws.close_reason)
    return 0 if code in (1000, 1001) else 1


def run(args: argparse.Namespace) -> int:
    options = Options(enable_compression=args.compression)
    try:
        return asyncio.run(interact(args.url, options, args.subprotocol, sys.stdin, args.linger))
    except KeyboardInterrupt:
        return 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "client",
        help="talk to a WebSocket server from the terminal",
        description="Send each line of standard input as a text message and print every message received "
        'after "< " (binary as hex). At the end of input, wait --linger seconds for the answers (less if the '
        "server closes first), then close the connection with 1000.",
    )
    parser.add_argument("url", type=ws_url, help="ws:// or wss:// URL")
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    parser.add_argument(
        "-s", "--subprotocol", action="append", default=[], help="offer a subprotocol (repeat for several)"
    )
    parser.add_argument(
        "--linger",
        type=seconds,
        default=DEFAULT_LINGER,
        metavar="SECONDS",
        help="at the end of input, wait this long for answers before closing; the wait ends early if the "
        f"server closes (default {DEFAULT_LINGER:g}; 0 closes at once)",
    )
    parser.set_defaults(handler=run)
