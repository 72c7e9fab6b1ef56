"""A server under attack, in its own process so the tests can watch its memory.

    python tests/attack_server.py asyncio

Default limits (1 MiB messages, 4096 fragments), compression offered, a
short open timeout and heartbeat so the slow-client attacks end quickly,
and room for 2,000 WebSockets. Prints the port once listening.
"""

from __future__ import annotations

import asyncio
import sys

from wsstack.options import Options

OPTIONS = Options(enable_compression=True, open_timeout=1.0, ping_interval=1.0, ping_timeout=1.0, close_timeout=1.0)
MAX_CONNECTIONS = 2000


async def run_asyncio() -> None:
    from wsstack.asyncio import Server

    server = Server(OPTIONS, max_connections=MAX_CONNECTIONS)

    @server.get("/*")
    async def echo(ctx):  # type: ignore[no-untyped-def]
        ws = await ctx.upgrade_to_websocket()
        async for message in ws:
            await ws.send(message)

    await server.listen(0, backlog=4096)
    print(server.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run({"asyncio": run_asyncio}[sys.argv[1]]())
