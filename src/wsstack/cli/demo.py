"""``python -m wsstack demo``: the seed's chat room, with a browser page to use it.

``GET /`` serves the page (``chat.html``, shipped as package data); the page
joins the room over ``/ws?name=...``. Compression is on, which browsers
always offer, so the demo also shows permessage-deflate working with them.

The room is one topic of a ``wsstack.hub.Hub``: in this process's memory by
default, or shared through Redis with ``--redis URL``, so that members on
different workers (``--workers N``) or machines are in one room. Every line,
"X joined" and "X left" included, goes through the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from ..asyncio import Context, Server, WebSocket
from ..hub import Backend, Hub, HubUnavailable, MemoryBackend
from ..options import Options
from ..session import SharedFrames
from .common import RUNTIME_ERROR, add_workers, count, listen_address, port, serve

__all__ = ["ChatRoom", "build_server", "register"]

logger = logging.getLogger("wsstack")

#: Chat lines are short; a bigger message is a client misbehaving (1009).
MAX_MESSAGE_SIZE = 1 << 16
MAX_NAME_LENGTH = 32
#: The lines a newcomer is sent first, unless ``--history`` says otherwise.
DEFAULT_HISTORY = 20
#: The room's topic; with the prefix, its Redis channel or stream is ``wsstack:demo:chat``.
TOPIC = "chat"
PREFIX = "wsstack:demo:"
#: Entries a Streams room keeps in Redis: plenty for any ``--history`` a person reads.
STREAM_LENGTH = 1000
REDIS_SCHEMES = ("redis", "rediss", "unix")


class ChatRoom:
    """The room's members, in this process and (through the hub's backend) in every other.

    The hub is made and started on first use, in the event loop of the
    process that serves: with ``--workers`` that is each worker, after the
    fork, so each one opens its own Redis connections (a connection
    inherited from the supervisor would be shared by every worker). Redis
    out of reach then is this join's failure alone: the newcomer's
    WebSocket is closed with 1011 and one line is logged, and the next join
    tries again (``connect_retries=0``: a refused connection fails at once
    rather than holding the newcomer while it retries).
    """

    def __init__(self, backend: Callable[[], Backend] | None = None, history: int = DEFAULT_HISTORY) -> None:
        """``backend`` makes the hub's backend (default: in memory, keeping ``history`` lines).

        ``history``: the lines a newcomer is sent before the live ones; 0
        for a backend that keeps none (Redis pub/sub).
        """
        if history < 0:
            raise ValueError(f"history must be >= 0, got {history}")
        self.make_backend = backend or (lambda: MemoryBackend(history=history))
        self.history = history
        self.hub: Hub | None = None
        self._closer: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()  # bound to a loop only on first contention, so safe to fork

    async def ensure_started(self) -> Hub:
        """This process's hub, started by the first join; ``HubUnavailable`` when its backend cannot start."""
        if self.hub is not None:
            return self.hub
        async with self._starting:
            if self.hub is None:
                hub = Hub(self.make_backend())
                await hub.start()
                logger.info("chat: worker %d joined the room through %s", os.getpid(), type(hub.backend).__name__)
                self.hub = hub
                self._closer = asyncio.create_task(_close_when_cancelled(hub))
        return self.hub

    async def join(self, ws: WebSocket, name: str) -> None:
        """Send the recent lines, announce ``name``, relay what it says until it leaves, then announce that."""
        try:
            hub = await self.ensure_started()
        except HubUnavailable as exc:
            logger.error("chat: the room is unavailable: %s", exc)
            await ws.close(1011, "the chat room is unavailable")
            return
        await self._enter(hub, ws)
        await self.say(hub, f"{name} joined")
        try:
            async for message in ws:
                if isinstance(message, str):
                    await self.say(hub, f"{name}: {message}")
        finally:
            # The hub forgot ``ws`` when it closed; the others hear that it left.
            await self.say(hub, f"{name} left")

    async def say(self, hub: Hub, text: str) -> None:
        """Publish ``text`` to every member of every process; a lost Redis reaches this process's members only."""
        logger.info("chat: %s", text)
        try:
            await hub.publish(TOPIC, text)
        except HubUnavailable as exc:
            logger.warning("chat: %s", exc)

    async def _enter(self, hub: Hub, ws: WebSocket) -> None:
        """Subscribe ``ws``, then send it the history, then the lines that came meanwhile.

        Subscribing first misses no line (the hub's rule: ``history()``
        after ``subscribe()``); the live lines wait behind the history so
        that the newcomer reads everything in order. A line published in
        the moment between the two calls can be shown twice.
        """
        if not self.history:
            await hub.subscribe(ws, TOPIC)
            return
        newcomer = _Newcomer(ws)
        await hub.subscribe(newcomer, TOPIC)
        try:
            lines = await hub.history(TOPIC, self.history)
        except HubUnavailable as exc:
            logger.warning("chat: no history for the newcomer: %s", exc)
            lines = []
        try:
            for line in lines:
                await ws.send(line)
        finally:
            newcomer.caught_up()


class _Newcomer:
    """A member while its history is sent: the live lines are held, then written in the order they came."""

    __slots__ = ("ws", "held")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.held: list[SharedFrames] | None = []

    def write_shared(self, frames: SharedFrames) -> bool:
        if self.held is None:
            return self.ws.write_shared(frames)
        self.held.append(frames)
        return True

    def add_close_callback(self, callback: Callable[[Any], object]) -> None:
        # The hub knows this member by the wrapper: it must get the wrapper back.
        self.ws.add_close_callback(lambda _ws: callback(self))

    def caught_up(self) -> None:
        held, self.held = self.held or [], None
        for frames in held:
            self.ws.write_shared(frames)


async def _close_when_cancelled(hub: Hub) -> None:
    """Close ``hub`` when the loop's shutdown cancels this task, while the loop still runs.

    The server's run() has no shutdown hook; asyncio cancels every task left
    at its end and waits for them, so the Redis connections close cleanly
    here instead of in their finalizers on a closed loop.
    """
    try:
        await asyncio.Event().wait()
    finally:
        try:
            await asyncio.wait_for(hub.close(), 2)
        except Exception as exc:  # the process is ending: a Redis already gone is no news
            logger.debug("chat: closing the hub: %s", exc)


def clean_name(raw: str) -> str:
    """A display name from the query string: trimmed, bounded, never empty."""
    name = " ".join(raw.split())[:MAX_NAME_LENGTH]
    return name or "guest"


def build_server(room: ChatRoom | None = None) -> Server:
    """The page at ``/`` and the room at ``/ws`` (default: a room in this process's memory)."""
    page = resources.files("wsstack.cli").joinpath("chat.html").read_bytes()
    srv = Server(Options(enable_compression=True, max_message_size=MAX_MESSAGE_SIZE))
    chat_room = ChatRoom() if room is None else room

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
        name = clean_name(ctx.query("name", ""))
        ws = await ctx.upgrade_to_websocket()
        logger.debug(
            "%s joined worker %d from %s with %s",
            name,
            os.getpid(),
            ws.remote_address,
            ws.extensions or "no extensions",
        )
        await chat_room.join(ws, name)

    return srv


def redis_url(text: str) -> str:
    """A Redis URL as redis-py reads it (redis://, rediss:// or unix://), checked before anything starts."""
    if urlsplit(text).scheme not in REDIS_SCHEMES:
        raise argparse.ArgumentTypeError(f"not a Redis URL: {text!r}; use redis://host[:port][/db]")
    return text


def history_count(text: str) -> int:
    """The lines of history a newcomer is sent, 0 or more."""
    return count(text, "lines", "{value} lines of history: use 0 or more")


def make_room(args: argparse.Namespace) -> ChatRoom:
    """The room the options ask for; ``ImportError`` for ``--redis`` without redis-py."""
    url: str | None = args.redis
    if url is None:
        return ChatRoom(history=args.history)
    if args.hub == "pubsub":
        from ..hub.redis_pubsub import RedisPubSubBackend

        return ChatRoom(lambda: RedisPubSubBackend(url, prefix=PREFIX), history=0)
    from ..hub.redis_streams import RedisStreamsBackend

    maxlen = max(STREAM_LENGTH, args.history)
    return ChatRoom(lambda: RedisStreamsBackend(url, prefix=PREFIX, maxlen=maxlen), history=args.history)


def run(args: argparse.Namespace) -> int:
    try:
        room = make_room(args)
    except ImportError as exc:
        logger.error("--redis needs redis-py (pip install 'wsstack[redis]'): %s", exc)
        return RUNTIME_ERROR
    server = build_server(room)
    if args.redis is not None:
        kept = f"a newcomer gets the last {room.history} lines" if room.history else "no history"
        logger.info("chat demo: the room is shared through Redis at %s (%s: %s)", args.redis, args.hub, kept)
    elif args.workers != 1 and args.workers is not None:
        logger.warning("chat demo: without --redis, each worker has a room of its own")

    def announce() -> None:
        # Once bound, so that the address is the real one (with --port 0 too) and only printed if it works.
        logger.info("chat demo: open http://%s/ in a browser", listen_address(args.host, server.port))

    def run_server() -> None:
        server.run(args.port, args.host, workers=args.workers, on_listening=announce)

    return serve(run_server, args.host, args.port)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a chat room with a browser page",
        description="Serve a chat page at / and the chat room it joins at /ws (permessage-deflate enabled). "
        "Open the printed address in a browser or two. With --workers N and --redis URL, members on "
        "different workers are in one room.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8080, help="port to bind, 0 for any free one (default 8080)")
    add_workers(parser)
    parser.add_argument(
        "--redis",
        type=redis_url,
        metavar="URL",
        help="share the room through Redis at URL (redis://host:port/db), across workers and machines "
        "(default: in this process's memory; each worker has its own room)",
    )
    parser.add_argument(
        "--hub",
        choices=("streams", "pubsub"),
        help="with --redis: streams (the default) keeps the room's lines in a Redis stream, so newcomers get "
        "the recent ones; pubsub keeps none (no history)",
    )
    parser.add_argument(
        "--history",
        type=history_count,
        default=DEFAULT_HISTORY,
        metavar="N",
        help=f"lines a newcomer is sent first (default {DEFAULT_HISTORY}; none with --hub pubsub)",
    )

    def handler(args: argparse.Namespace) -> int:
        if args.hub is not None and args.redis is None:
            parser.error("--hub needs --redis URL")
        if args.redis is not None and args.hub is None:
            args.hub = "streams"
        return run(args)

    parser.set_defaults(handler=handler)
