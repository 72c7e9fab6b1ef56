"""Connection limits: at most N WebSockets at a time; the next ones wait for a free slot.

The seed's pattern: a semaphore taken before the upgrade, so a client beyond
the limit stays in its opening handshake (no 101 yet) until someone leaves,
or until it gives up on its own open timeout. Waiting costs the server only
the pending request.

To refuse instead of queueing, the server has the limit built in:
``Server(max_connections=N)`` answers the upgrade beyond N with
``503 Service Unavailable`` at once; ``--builtin`` runs that variant.
"""

from __future__ import annotations

import argparse
import asyncio

from wsstack.asyncio import Context, Server


class RateLimitedServer:
    """An echo service that lets ``max_connections`` clients in at a time."""

    def __init__(self, max_connections: int) -> None:
        self.connection_limit = asyncio.Semaphore(max_connections)

    async def handle_client(self, ctx: Context) -> None:
        async with self.connection_limit:
            ws = await ctx.upgrade_to_websocket()

            while (msg := await ws.recv()) is not None:
                await ws.send(msg)


def build_server(max_connections: int = 100, *, builtin: bool = False) -> Server:
    """An echo server on /ws that queues (or, with ``builtin``, refuses) clients beyond the limit."""
    if builtin:
        srv = Server(max_connections=max_connections)

        @srv.get("/ws")
        async def echo(ctx: Context) -> None:
            ws = await ctx.upgrade_to_websocket()
            while (msg := await ws.recv()) is not None:
                await ws.send(msg)

        return srv

    srv = Server()
    limited = RateLimitedServer(max_connections)
    srv.get("/ws")(limited.handle_client)
    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-connections", type=int, default=100)
    parser.add_argument("--builtin", action="store_true", help="refuse with 503 via Server(max_connections=...)")
    args = parser.parse_args()
    mode = "refused" if args.builtin else "queued"
    print(f"Echo server on ws://{args.host}:{args.port}/ws, {args.max_connections} at a time, the rest {mode}")
    build_server(args.max_connections, builtin=args.builtin).run(args.port, args.host)


if __name__ == "__main__":
    main()
