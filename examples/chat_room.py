"""Chat room: everyone sees who joins, what each member says, and who leaves.

Join with ws://127.0.0.1:8080/ws?name=alice (the name comes from the query
string). Every member receives "alice joined", "alice: <message>" and
"alice left", the sender included. For a browser page on top of the same
room, run ``python -m wsstack demo``.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from wsstack import ConnectionClosed
from wsstack.asyncio import Context, Server, WebSocket


@dataclass
class Client:
    conn: WebSocket
    username: str


class ChatRoom:
    """The members of the room and the lock that guards the list.

    ``broadcast`` is the seed's loop, one awaited send per member. It is
    correct, but a member whose socket is full makes everyone wait behind
    it while the lock is held; ``wsstack.asyncio.broadcast()`` (see
    broadcast_server.py) writes to all members without awaiting any.
    """

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.lock = asyncio.Lock()

    async def join(self, ws: WebSocket, username: str) -> None:
        async with self.lock:
            self.clients.append(Client(ws, username))

        try:
            await self.broadcast(f"{username} joined")
            while (msg := await ws.recv()) is not None:
                if isinstance(msg, str):  # a chat is text: binary messages are ignored
                    await self.broadcast(f"{username}: {msg}")
        finally:
            # However the member leaves: recv() returning None, a ConnectionClosed, a cancelled handler.
            async with self.lock:
                self.clients = [c for c in self.clients if c.conn is not ws]
            await self.broadcast(f"{username} left")

    async def broadcast(self, msg: str) -> None:
        async with self.lock:
            for client in self.clients:
                try:
                    await client.conn.send(msg)
                except ConnectionClosed:
                    pass  # it is leaving; join() removes it


def build_server() -> Server:
    """A server with one ``ChatRoom`` behind /ws?name=..."""
    srv = Server()
    room = ChatRoom()

    @srv.get("/ws")
    async def ws_route(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.resp().set_status(400)
            return
        username = ctx.query("name") or "guest"
        await room.join(await ctx.upgrade_to_websocket(), username)

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"Chat room on ws://{args.host}:{args.port}/ws?name=<your name>")
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
