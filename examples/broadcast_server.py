"""Broadcast server: every message a client sends goes to every connected client, the sender included.

Connect two or more clients to ws://127.0.0.1:8080/ws and type in one of them.
"""

from __future__ import annotations

import argparse
import asyncio

from wsstack.asyncio import Context, Server, WebSocket, broadcast


class BroadcastServer:
    """The connected clients, and the fan-out of each message to all of them.

    The lock keeps the set from changing while a message goes out. With
    ``broadcast()`` that step never awaits, so the lock is held only for as
    long as it takes to hand one frame (encoded once) to every socket; a
    slow client is skipped for that message instead of holding up the rest,
    which the awaiting per-client loop (see chat_room.py) cannot promise.
    """

    def __init__(self) -> None:
        self.clients: set[WebSocket] = set()
        self.clients_lock = asyncio.Lock()

    async def handle_client(self, ws: WebSocket) -> None:
        async with self.clients_lock:
            self.clients.add(ws)
        try:
            while (msg := await ws.recv()) is not None:
                await self.broadcast(msg)
        finally:
            async with self.clients_lock:
                self.clients.discard(ws)

    async def broadcast(self, msg: str | bytes) -> None:
        async with self.clients_lock:
            broadcast(self.clients, msg)


def build_server() -> Server:
    """A server whose /ws route joins every client to one ``BroadcastServer``."""
    srv = Server()
    room = BroadcastServer()

    @srv.get("/ws")
    async def ws_route(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.resp().set_status(400)
            return
        await room.handle_client(await ctx.upgrade_to_websocket())

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"Broadcast server on ws://{args.host}:{args.port}/ws")
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
