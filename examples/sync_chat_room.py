"""Chat room on threads: everyone sees who joins, what each member says, and who leaves.

The same room as chat_room.py, written with ``wsstack.sync``. Join with
ws://127.0.0.1:8080/ws?name=alice (the name comes from the query string).
Every member receives "alice joined", "alice: <message>" and "alice left",
the sender included.
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass

from wsstack.sync import Context, Server, WebSocket, broadcast


@dataclass
class Client:
    conn: WebSocket
    username: str


class ChatRoom:
    """The members of the room and the lock that guards the list.

    Each member's handler runs on its own thread, so the list is shared
    between threads. The fan-out uses ``wsstack.sync.broadcast()`` rather
    than one blocking ``send()`` per member: a member whose socket is full
    would otherwise hold the lock, and every other member, for as long as
    it does not read. ``broadcast()`` never blocks; such a member misses
    the message instead.
    """

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.lock = threading.Lock()

    def join(self, ws: WebSocket, username: str) -> None:
        with self.lock:
            self.clients.append(Client(ws, username))

        try:
            self.broadcast(f"{username} joined")
            while (msg := ws.recv()) is not None:
                if isinstance(msg, str):  # a chat is text: binary messages are ignored
                    self.broadcast(f"{username}: {msg}")
        finally:
            # However the member leaves: recv() returning None or an exception (a ConnectionClosed, say).
            with self.lock:
                self.clients = [c for c in self.clients if c.conn is not ws]
            self.broadcast(f"{username} left")

    def broadcast(self, msg: str) -> None:
        with self.lock:
            broadcast([client.conn for client in self.clients], msg)


def build_server() -> Server:
    """A server with one ``ChatRoom`` behind /ws?name=..."""
    srv = Server()
    room = ChatRoom()

    @srv.get("/ws")
    def ws_route(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.resp().set_status(400)
            return
        username = ctx.query("name") or "guest"
        room.join(ctx.upgrade_to_websocket(), username)

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"Chat room on ws://{args.host}:{args.port}/ws?name=<your name>", flush=True)
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
