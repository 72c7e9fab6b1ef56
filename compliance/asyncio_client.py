"""Autobahn|Testsuite client testee on wsstack.asyncio.

    python compliance/asyncio_client.py --url ws://127.0.0.1:9001 --agent wsstack

Follows the suite's client protocol: read the case count, connect to each
case and echo every message until the server closes, then ask for the report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from wsstack.asyncio import connect
from wsstack.errors import WebSocketError
from wsstack.options import Options

OPTIONS = Options(enable_compression=True, max_message_size=1 << 25, max_fragments=None)


async def run_case(url: str) -> None:
    try:
        async with connect(url, options=OPTIONS) as ws:
            async for message in ws:
                await ws.send(message)
    except (WebSocketError, OSError) as exc:
        logging.getLogger("wsstack").info("%s: %s", url, exc)


async def main(base: str, agent: str) -> None:
    async with connect(f"{base}/getCaseCount") as ws:
        count = int(await ws.recv() or 0)
    for case in range(1, count + 1):
        await run_case(f"{base}/runCase?case={case}&agent={agent}")
    async with connect(f"{base}/updateReports?agent={agent}") as ws:
        await ws.recv()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="wsstack-asyncio")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.url.rstrip("/"), args.agent))
