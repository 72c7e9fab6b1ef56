"""An echo server under a low descriptor limit, in its own process: a test must not lower its own.

    python tests/e2e/fd_limit_server.py {sync,asyncio,uvloop} LIMIT

Lowers the soft RLIMIT_NOFILE to LIMIT, logs to stderr (INFO and up), prints
the port once listening and serves /ws until SIGTERM.
"""

from __future__ import annotations

import logging
import resource
import sys


def main() -> None:
    kind, limit = sys.argv[1], int(sys.argv[2])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if kind == "sync":
        from wsstack.sync import Context, Server

        sync_server = Server()

        @sync_server.get("/ws")
        def echo(ctx: Context) -> None:
            ws = ctx.upgrade_to_websocket()
            for message in ws:
                ws.send(message)

        sync_server.run(0, on_listening=lambda: print(sync_server.port, flush=True))
        return

    from wsstack.asyncio import Context as AsyncContext
    from wsstack.asyncio import Server as AsyncServer

    server = AsyncServer()

    @server.get("/ws")
    async def async_echo(ctx: AsyncContext) -> None:
        ws = await ctx.upgrade_to_websocket()
        async for message in ws:
            await ws.send(message)

    server.run(0, loop=kind, on_listening=lambda: print(server.port, flush=True))


if __name__ == "__main__":
    main()
