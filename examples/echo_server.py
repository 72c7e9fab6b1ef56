"""Basic echo server: every message comes back to its sender, text as text and binary as binary.

Run it, then connect a client to ws://127.0.0.1:8080/ws (for instance
``python -m wsstack client ws://127.0.0.1:8080/ws``). A plain HTTP GET on
/ws, one that does not ask for an upgrade, gets 400.
"""

from __future__ import annotations

import argparse

from wsstack.asyncio import Context, Server


def build_server() -> Server:
    """The server with its one route; the caller decides where it listens."""
    srv = Server()

    @srv.get("/ws")
    async def echo(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.resp().set_status(400)
            return

        ws = await ctx.upgrade_to_websocket()
        print("WebSocket client connected")

        # recv() returns None once the connection is closed.
        while (msg := await ws.recv()) is not None:
            print(f"Received: {msg!r}")
            await ws.send(msg)

        print("WebSocket client disconnected")

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"WebSocket server on ws://{args.host}:{args.port}/ws")
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
