"""Receive path: 10,000 small masked client frames fed to a server in 64 KiB chunks.

Each library parses, unmasks, validates and turns the frames into message
events; this is the per-frame cost of a busy server.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType

from wsstack.connection import ServerConnection, State
from wsstack.options import Options

FRAMES = 10_000
CHUNK = 65536


def _masked_stream(first_byte: int, payload: bytes) -> list[bytes]:
    frames = []
    for _ in range(FRAMES):
        key = os.urandom(4)
        body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append(bytes((first_byte, 0x80 | len(payload))) + key + body)
    stream = b"".join(frames)
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


PAYLOADS = {
    "ascii125": (0x81, b"{'id': 1234, 'op': 'update', 'path': '/a/b', 'value': " + b"x" * 70 + b"}"),
    "text125": (0x81, b"x" * 94 + "é€𝄞 abc ".encode() * 2 + b"y" * 3),
    "binary125": (0x82, bytes(range(125))),
}


def parse_wsstack(chunks: list[bytes]) -> int:
    conn = ServerConnection(Options(), state=State.OPEN)
    count = 0
    for chunk in chunks:
        conn.receive_data(chunk)
        count += len(conn.events())
    return count


def parse_websockets(chunks: list[bytes]) -> int:
    proto = ServerProtocol(state=WsState.OPEN)
    count = 0
    for chunk in chunks:
        proto.receive_data(chunk)
        count += len(proto.events_received())
    return count


def parse_wsproto(chunks: list[bytes]) -> int:
    conn = WsprotoConnection(ConnectionType.SERVER)
    count = 0
    for chunk in chunks:
        conn.receive_data(chunk)
        # wsproto may hand a message over in pieces; count whole messages.
        count += sum(1 for event in conn.events() if getattr(event, "message_finished", False))
    return count


PARSERS: dict[str, Callable[[list[bytes]], int]] = {
    "wsstack": parse_wsstack,
    "websockets": parse_websockets,
    "wsproto": parse_wsproto,
}


@pytest.mark.parametrize("library", list(PARSERS))
@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_parse_small_frames(benchmark, kind: str, library: str) -> None:
    first_byte, payload = PAYLOADS[kind]
    assert len(payload) == 125
    chunks = _masked_stream(first_byte, payload)
    benchmark.group = f"parse 10k x 125 B {kind}"
    benchmark.extra_info["bytes"] = sum(map(len, chunks))
    assert benchmark(PARSERS[library], chunks) == FRAMES
