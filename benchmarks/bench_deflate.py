"""permessage-deflate: compress a message on one side, decompress it on the other.

Each library's own extension object does the work with the same zlib
settings (level 6, memory level 8, 15-bit windows, context takeover kept) on
the same distinct JSON-like messages, sent round robin, so the measure is
what each implementation adds around zlib. There are enough of them to span
twice the 32 KiB window, so context takeover finds structure but never a
whole earlier message, as in real traffic; one message sent over and over
would compress to a single back-reference.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate
from websockets.frames import Frame as WebsocketsFrame
from websockets.frames import Opcode as WebsocketsOpcode
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate
from wsproto.frame_protocol import Opcode, RsvBits

from wsstack.extensions.permessage_deflate import PerMessageDeflate

LIMIT = 1 << 20
# Message size and how many distinct messages one round sends.
SIZES = {"1KiB": (1024, 64), "64KiB": (65536, 2)}


def json_like(size: int, seed: int) -> bytes:
    """A JSON array of small records cut to ``size`` bytes: what chat and API traffic looks like."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "status", "pending", "active", "user", "order", "item"]
    records = []
    text = ""
    while len(text) < size:
        for _ in range(16):
            records.append(
                {
                    "id": rng.randrange(10**9),
                    "name": f"{rng.choice(words)}-{rng.randrange(10**4)}",
                    "active": rng.random() < 0.5,
                    "score": round(rng.random() * 1000, 3),
                    "tags": rng.sample(words, 3),
                }
            )
        text = json.dumps(records)
    return text[:size].encode()


def run_wsstack(messages: list[bytes]) -> Callable[[], int]:
    sender = PerMessageDeflate()
    receiver = PerMessageDeflate()
    encode = sender.encode
    decode = receiver.decode

    def round_trip() -> int:
        total = 0
        for message in messages:
            rsv, data = encode(message)
            total += len(decode(rsv, data, True, LIMIT))
        return total

    return round_trip


def run_websockets(messages: list[bytes]) -> Callable[[], int]:
    settings = {"memLevel": 8}
    sender = WebsocketsDeflate(False, False, 15, 15, settings)
    receiver = WebsocketsDeflate(False, False, 15, 15, settings)

    def round_trip() -> int:
        total = 0
        for message in messages:
            frame = sender.encode(WebsocketsFrame(WebsocketsOpcode.TEXT, message))
            total += len(receiver.decode(frame, max_size=LIMIT).data)
        return total

    return round_trip


class _Side:
    """The one attribute wsproto's extension reads from its connection."""

    def __init__(self, client: bool) -> None:
        self.client = client


def run_wsproto(messages: list[bytes]) -> Callable[[], int]:
    sender = WsprotoDeflate()
    receiver = WsprotoDeflate()
    client: Any = _Side(True)
    server: Any = _Side(False)
    plain = RsvBits(False, False, False)

    def round_trip() -> int:
        total = 0
        for message in messages:
            rsv, data = sender.frame_outbound(client, Opcode.TEXT, plain, message, True)
            receiver.frame_inbound_header(server, Opcode.TEXT, rsv, len(data))
            head = receiver.frame_inbound_payload_data(server, data)
            tail = receiver.frame_inbound_complete(server, True)
            assert isinstance(head, bytes) and isinstance(tail, bytes)
            total += len(head) + len(tail)
        return total

    return round_trip


LIBRARIES: dict[str, Callable[[list[bytes]], Callable[[], int]]] = {
    "wsstack": run_wsstack,
    "websockets": run_websockets,
    "wsproto": run_wsproto,
}


@pytest.mark.parametrize("library", list(LIBRARIES))
@pytest.mark.parametrize("size", list(SIZES))
def test_deflate_round_trip(benchmark, size: str, library: str) -> None:
    length, count = SIZES[size]
    messages = [json_like(length, seed) for seed in range(count)]
    round_trip = LIBRARIES[library](messages)
    benchmark.group = f"deflate {count} x {size} JSON, compress+decompress"
    benchmark.extra_info["bytes"] = sum(map(len, messages))
    assert benchmark(round_trip) == sum(map(len, messages))
