"""Echo servers for the end-to-end benchmark, one per library, each in its own process.

    python benchmarks/echo_servers.py {wsstack,wsstack-uvloop,websockets} PORT

All run without compression, with the same 16 MiB message limit; on the
default asyncio event loop except ``wsstack-uvloop``.
"""

from __future__ import annotations

import asyncio
import sys


async def run_wsstack(port: int) -> None:
    from wsstack.asyncio import Server
    from wsstack.options import Options

    server = Server(Options(max_message_size=16 << 20, max_queue=64))

    @server.get("/")
    async def echo(ctx):  # type: ignore[no-untyped-def]
        ws = await ctx.upgrade_to_websocket()
        while (message := await ws.recv()) is not None:
            await ws.send(message)

    await server.listen(port)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def run_websockets(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=16 << 20, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    impl, port = sys.argv[1], int(sys.argv[2])
    main = {"wsstack": run_wsstack, "wsstack-uvloop": run_wsstack, "websockets": run_websockets}[impl](port)
    if impl.endswith("uvloop"):
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)
