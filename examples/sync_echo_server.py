"""Basic echo server on threads: every message comes back to its sender, text as text and binary as binary.

The same server as echo_server.py, written with ``wsstack.sync``: the
handler is a plain function and its calls block. Run it, then connect a
client to ws://127.0.0.1:8080/ws (for instance ``python -m wsstack client
ws://127.0.0.1:8080/ws``). A plain HTTP GET on /ws, one that does not ask
for an upgrade, gets 400.
"""

from __future__ import annotations

import argparse

from wsstack.sync import Context, Server


def build_server() -> Server:
    """The server with its one route; the caller decides where it listens."""
    srv = Server()

    @srv.get("/ws")
    def echo(ctx: Context) -> None:
        if not ctx.is_websocket_upgrade():
            ctx.resp().set_status(400)
            return

        ws = ctx.upgrade_to_websocket()
        print("WebSocket client connected", flush=True)

        # recv() returns None once the connection is closed.
        while (msg := ws.recv()) is not None:
            print(f"Received: {msg!r}", flush=True)
            ws.send(msg)

        print("WebSocket client disconnected", flush=True)

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"WebSocket server on ws://{args.host}:{args.port}/ws", flush=True)
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
