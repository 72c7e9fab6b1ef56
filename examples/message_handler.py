"""Echo through a message handler: the callback way to consume a connection, for the lowest latency.

Instead of a task looping on ``await ws.recv()``, the handler is called for
each message inside the transport's read callback and answers at once with
``send_nowait()``. This one echoes and counts; ``/stats`` reports the count
over plain HTTP. Connect a client to ws://127.0.0.1:8080/ws.
"""

from __future__ import annotations

import argparse

from wsstack.asyncio import Context, Server, WebSocket


class Echo:
    """The handler of one connection: a callable that takes str or bytes and must not block."""

    def __init__(self, ws: WebSocket, totals: dict[str, int]) -> None:
        self.ws = ws
        self.totals = totals

    def __call__(self, message: str | bytes) -> None:
        self.totals["messages"] += 1
        self.ws.send_nowait(message)  # str goes back as text, bytes as binary


def build_server() -> Server:
    """The server with its routes; the caller decides where it listens."""
    srv = Server()
    totals = {"messages": 0}

    @srv.get("/ws")
    async def echo(ctx: Context) -> None:
        ws = await ctx.upgrade_to_websocket()
        ws.set_message_handler(Echo(ws, totals))
        # The connection lives as long as this route handler does.
        await ws.wait_closed()

    @srv.get("/stats")
    async def stats(ctx: Context) -> None:
        ctx.response.body = f"messages echoed: {totals['messages']}\n"  # str: sent as text/plain

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"WebSocket server on ws://{args.host}:{args.port}/ws, counts on http://{args.host}:{args.port}/stats")
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
