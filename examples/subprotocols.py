"""Subprotocols: pick "chat" or "binary" from what the client offers in Sec-WebSocket-Protocol.

A subprotocol is the application's name for what the messages mean. The
client lists the ones it speaks; the server answers with one of them, or
with none, and both sides then know how to talk. Here "chat" echoes
messages as text and "binary" echoes them as binary.

Try it with ``python -m wsstack client -s binary ws://127.0.0.1:8080/ws``.
"""

from __future__ import annotations

import argparse

from wsstack import Options
from wsstack.asyncio import Context, Server


def build_server() -> Server:
    """An echo server on /ws whose answer format depends on the negotiated subprotocol."""
    srv = Server()

    @srv.get("/ws")
    async def ws_route(ctx: Context) -> None:
        # The raw header may list several, e.g. "binary, chat";
        # offered_subprotocols() splits it into ["binary", "chat"].
        requested = ctx.header("Sec-WebSocket-Protocol")
        offered = ctx.offered_subprotocols()

        opts = Options()
        if "chat" in offered:
            opts = Options(subprotocol="chat")
        elif "binary" in offered:
            opts = Options(subprotocol="binary")

        # Same as: await ctx.upgrade_to_websocket(subprotocol="chat"), which
        # keeps the server's other options.
        ws = await ctx.upgrade_to_websocket(opts)
        print(f"Requested {requested!r}, speaking {ws.subprotocol!r}")

        while (msg := await ws.recv()) is not None:
            if ws.subprotocol == "binary":
                await ws.send_binary(msg.encode() if isinstance(msg, str) else msg)
            else:
                await ws.send(msg)

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"Subprotocol server (chat, binary) on ws://{args.host}:{args.port}/ws")
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
