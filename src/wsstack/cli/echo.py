"""``python -m wsstack echo``: an echo server on every path, sized for conformance suites.

The Autobahn|Testsuite sends messages of up to 16 MiB, some of them split
into 64-byte fragments (65536 frames for one message), to whatever path it
is configured with; the default limits, meant for servers facing the
internet, would fail those cases on purpose. This server lifts them and
answers on any path.
"""

from __future__ import annotations

import argparse
import logging

from .. import sync
from ..asyncio import Context, Server
from ..errors import ConnectionClosed
from ..options import Options
from .common import add_workers, port, serve

__all__ = ["MAX_MESSAGE_SIZE", "build_server", "build_sync_server", "register"]

logger = logging.getLogger("wsstack")

#: Room for Autobahn's largest messages (16 MiB) with margin.
MAX_MESSAGE_SIZE = 1 << 25


async def echo(ctx: Context) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    if not ctx.is_websocket_upgrade():
        ctx.response.set_status(426)
        ctx.response.set_header("Upgrade", "websocket")
        ctx.response.body = "This is a WebSocket echo server: connect with a WebSocket client.\n"
        return
    ws = await ctx.upgrade_to_websocket()
    logger.debug("%s connected to %s", ws.remote_address, ctx.path)
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass  # the peer's close came in right behind its last messages: no one to answer
    logger.debug("%s disconnected: %s %s", ws.remote_address, ws.close_code, ws.close_reason)


def build_server(compression: bool = False) -> Server:
    options = Options(
        enable_compression=compression,
        max_message_size=MAX_MESSAGE_SIZE,
        max_fragments=None,
    )
    srv = Server(options)
    srv.get("/*")(echo)
    return srv


def sync_echo(ctx: sync.Context) -> None:
    """``echo`` on the threaded transport, for ``--sync``."""
    if not ctx.is_websocket_upgrade():
        ctx.response.set_status(426)
        ctx.response.set_header("Upgrade", "websocket")
        ctx.response.body = "This is a WebSocket echo server: connect with a WebSocket client.\n"
        return
    ws = ctx.upgrade_to_websocket()
    try:
        for message in ws:
            ws.send(message)
    except ConnectionClosed:
        pass  # as in echo()


def build_sync_server(compression: bool = False) -> sync.Server:
    srv = sync.Server(build_server(compression).options)
    srv.get("/*")(sync_echo)
    return srv


def run(args: argparse.Namespace) -> int:
    server = (build_sync_server if args.sync else build_server)(args.compression)
    return serve(lambda: server.run(args.port, args.host, workers=args.workers), args.host, args.port)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "echo",
        help="run an echo server on every path",
        description="Echo every WebSocket message back, on any path, with limits lifted for conformance "
        "suites such as Autobahn (messages up to 32 MiB, any number of fragments).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8080, help="port to bind, 0 for any free one (default 8080)")
    parser.add_argument("--compression", action="store_true", help="accept permessage-deflate")
    parser.add_argument("--sync", action="store_true", help="serve on the threaded transport (wsstack.sync)")
    add_workers(parser)
    parser.set_defaults(handler=run)
