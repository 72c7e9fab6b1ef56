"""``python -m wsstack demo``: the seed's chat room, with a browser page to use it.

``GET /`` serves the page (``chat.html``, shipped as package data); the page
joins the room over ``/ws?name=...``. Compression is on, which browsers
always offer, so the demo also shows permessage-deflate working with them.
"""

from __future__ import annotations

import argparse
import logging
from importlib import resources

from ..asyncio import Context, Server, WebSocket, broadcast
from ..options import Options

__all__ = ["ChatRoom", "build_server", "register"]

logger = logging.getLogger("wsstack")

#: Chat lines are short; a bigger message is a client misbehaving (1009).
MAX_MESSAGE_SIZE = 1 << 16
MAX_NAME_LENGTH = 32


class ChatRoom:
    """Members by connection, and the announcements every member receives.

    ``broadcast()`` writes to every member without awaiting, so no other
    task can run in the middle of an announcement and the dict needs no lock
    (the seed's version awaits each send and has to hold one).
    """

    def __init__(self) -> None:
        self.members: dict[WebSocket, str] = {}

    async def join(self, ws: WebSocket, name: str) -> None:
        """Announce ``name``, relay what it says until it leaves, then announce that."""
        self.members[ws] = name
        self.announce(f"{name} joined")
        try:
            async for message in ws:
                if isinstance(message, str):
                    self.announce(f"{name}: {message}")
        finally:
            del self.members[ws]
            self.announce(f"{name} left")

    def announce(self, text: str) -> None:
        logger.info("chat: %s", text)
        broadcast(self.members, text)


def clean_name(raw: str) -> str:
    """A display name from the query string: trimmed, bounded, never empty."""
    name = " ".join(raw.split())[:MAX_NAME_LENGTH]
    return name or "guest"


def build_server() -> Server:
    """The page at ``/`` and the room at ``/ws``."""
    page = resources.files("wsstack.cli").joinpath("chat.html").read_bytes()
    srv = Server(Options(enable_compression=True, max_message_size=MAX_MESSAGE_SIZE))
    room = ChatRoom()

    @srv.route("/", ("GET", "HEAD"))
    async def index(ctx: Context) -> None:
        ctx.response.set_header("Content-Type", "text/html; charset=utf-8")
        ctx.response.set_header("Cache-Control", "no-cache")
        ctx.response.body = page

    @srv.get("/ws")
    async def chat(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.response.set_status(400)
            ctx.response.body = "Open / in a browser; /ws is the page's WebSocket.\n"
            return
        name = clean_name(ctx.query_params.get("name", [""])[0])
        ws = await ctx.upgrade_to_websocket()
        logger.debug("%s joined from %s with %s", name, ws.remote_address, ws.extensions or "no extensions")
        await room.join(ws, name)

    return srv


def run(args: argparse.Namespace) -> int:
    if args.port:  # with 0 the port is only known once bound: see the "listening on" line
        host = f"[{args.host}]" if ":" in args.host else args.host
        logger.info("chat demo: open http://%s:%d/ in a browser", host, args.port)
    build_server().run(args.port, args.host)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a chat room with a browser page",
        description="Serve a chat page at / and the chat room it joins at /ws (permessage-deflate enabled). "
        "Open the printed address in a browser or two.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind, 0 for any free one (default 8080)")
    parser.set_defaults(handler=run)
