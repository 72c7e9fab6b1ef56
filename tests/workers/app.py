"""The application the worker tests run as a fresh process: ``python tests/workers/app.py [options]``.

Each WebSocket first gets the pid of the worker that accepted it, then its
messages echoed; a test tells the workers apart by those pids. Once every
worker listens, the supervisor prints ``listening PORT`` on stdout. The log
(DEBUG and up) goes to stderr, where the tests look for the supervisor's lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from wsstack import asyncio as aio
from wsstack import sync


def announce(server: aio.Server | sync.Server) -> None:
    print(f"listening {server.port}", flush=True)


def asyncio_server(die: bool, stuck: bool) -> aio.Server:
    server = aio.Server(shutdown_timeout=3.0)

    @server.get("/")
    async def pid(ctx: aio.Context) -> None:
        if die:
            os._exit(3)  # a worker that crashes on every connection
        if stuck:
            logging.warning("handler stuck")
            time.sleep(60)  # blocks the loop: the worker can no longer act on SIGTERM
        ws = await ctx.upgrade_to_websocket()
        await ws.send(str(os.getpid()))
        async for message in ws:
            await ws.send(message)

    return server


def sync_server() -> sync.Server:
    server = sync.Server(shutdown_timeout=3.0)

    @server.get("/")
    def pid(ctx: sync.Context) -> None:
        ws = ctx.upgrade_to_websocket()
        ws.send(str(os.getpid()))
        for message in ws:
            ws.send(message)

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--die", action="store_true", help="each worker exits (status 3) on its first request")
    parser.add_argument("--stuck", action="store_true", help="a request blocks its worker's loop for a minute")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(message)s")
    if args.sync:
        sserver = sync_server()
        sserver.run(0, workers=args.workers, on_listening=lambda: announce(sserver))
    else:
        aserver = asyncio_server(args.die, args.stuck)
        aserver.run(0, workers=args.workers, on_listening=lambda: announce(aserver), loop="asyncio")


if __name__ == "__main__":
    main()
