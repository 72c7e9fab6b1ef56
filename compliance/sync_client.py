"""Autobahn|Testsuite client testee on wsstack.sync (the threaded transport).

    python compliance/sync_client.py --url ws://127.0.0.1:9001 --agent wsstack

The twin of asyncio_client.py with blocking calls, so that the suite judges
the threaded transport's client on the same terms: read the case count,
connect to each case and echo every message until the server closes, then
ask for the report. Compression is offered because chapters 12 and 13 need
it; the limits are lifted because the 9.* cases send up to 16 MiB in up to
65536 fragments.
"""

from __future__ import annotations

import argparse
import logging

from wsstack.errors import WebSocketError
from wsstack.options import Options
from wsstack.sync import connect

OPTIONS = Options(enable_compression=True, max_message_size=1 << 25, max_fragments=None)


def run_case(url: str) -> None:
    # A case that ends in a protocol error is the expected outcome of many
    # cases, not a reason to stop: log it and go on with the next one.
    try:
        with connect(url, options=OPTIONS) as ws:
            for message in ws:
                ws.send(message)
    except (WebSocketError, OSError) as exc:
        logging.getLogger("wsstack").info("%s: %s", url, exc)


def main(base: str, agent: str) -> None:
    with connect(f"{base}/getCaseCount") as ws:
        count = int(ws.recv() or 0)
    for case in range(1, count + 1):
        run_case(f"{base}/runCase?case={case}&agent={agent}")
    with connect(f"{base}/updateReports?agent={agent}") as ws:
        ws.recv()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="wsstack-sync")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    main(args.url.rstrip("/"), args.agent)
