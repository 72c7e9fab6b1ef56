"""Heartbeat: ping every client at an interval to find connections that died silently.

A peer that vanished without closing (a pulled cable, a suspended laptop)
leaves a TCP connection that looks open for a long time. Pinging it and
waiting a bounded time for the pong finds out. The handler below runs the
seed's hand-written loop next to an echo loop; ``--builtin`` shows the same
thing done by the library with ``Options(ping_interval=..., ping_timeout=...)``,
which uses timers instead of a task per connection and closes with 1011
when a pong is late.
"""

from __future__ import annotations

import argparse
import asyncio

from wsstack import ConnectionClosed, Options
from wsstack.asyncio import Context, Server, WebSocket


async def heartbeat_loop(ws: WebSocket, interval: float, timeout: float) -> None:
    """Ping every ``interval`` seconds; close the connection if a pong takes over ``timeout``."""
    while ws.is_open:
        await asyncio.sleep(interval)
        try:
            # ping() sends at once and returns a future of the round-trip time.
            rtt = await asyncio.wait_for(ws.ping(), timeout)
        except (ConnectionClosed, asyncio.TimeoutError):
            print("Heartbeat failed, connection lost")
            await ws.close(1011, "heartbeat timeout")
            break
        print(f"Heartbeat: pong after {rtt * 1000:.1f} ms")


def build_server(interval: float = 30.0, timeout: float = 10.0, *, builtin: bool = False) -> Server:
    """An echo server on /ws whose connections are watched by a heartbeat."""
    # The library's heartbeat needs nothing spawned in the handler.
    srv = Server(Options(ping_interval=interval, ping_timeout=timeout)) if builtin else Server()

    @srv.get("/ws")
    async def echo(ctx: Context) -> None:
        ws = await ctx.upgrade_to_websocket()
        heartbeat = None if builtin else asyncio.create_task(heartbeat_loop(ws, interval, timeout))
        try:
            while (msg := await ws.recv()) is not None:
                await ws.send(msg)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between pings (default 30)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a pong (default 10)")
    parser.add_argument("--builtin", action="store_true", help="use Options(ping_interval, ping_timeout)")
    args = parser.parse_args()
    print(f"Echo server with heartbeat on ws://{args.host}:{args.port}/ws")
    build_server(args.interval, args.timeout, builtin=args.builtin).run(args.port, args.host)


if __name__ == "__main__":
    main()
