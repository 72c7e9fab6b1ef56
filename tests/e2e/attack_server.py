"""A server under attack, in its own process so the tests can watch its memory.

    python tests/attack_server.py {asyncio,sync}

Default limits (1 MiB messages, 4096 fragments), compression offered, a
short open timeout and heartbeat so the slow-client attacks end quickly,
and room for 2,000 WebSockets. Prints the port once listening.
"""

from __future__ import annotations

import asyncio
import sys

from wsstack.options import Options

# The heartbeat fails a silent peer after about 8 s: late enough that opening
# 2,000 idle connections fits before it on a loaded machine (under coverage,
# beside another test run), early enough to end a never-reading client.
OPTIONS = Options(enable_compression=True, open_timeout=1.0, ping_interval=4.0, ping_timeout=4.0, close_timeout=1.0)
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


def run_sync() -> None:
    from wsstack.sync import Server

    server = Server(OPTIONS, max_connections=MAX_CONNECTIONS)

    @server.get("/*")
    def echo(ctx):  # type: ignore[no-untyped-def]
        ws = ctx.upgrade_to_websocket()
        for message in ws:
            ws.send(message)

    server.listen(0, backlog=4096)
    print(server.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "sync":
        run_sync()
    else:
        asyncio.run(run_asyncio())
