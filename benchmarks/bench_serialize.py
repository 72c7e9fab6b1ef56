"""Send path: 10,000 messages of 125 B each turned into the bytes of their frames, one at a time.

Each library gets the message and hands back (or writes) that frame's
bytes before the next: for the sans-IO libraries ``send`` then
``data_to_send`` per message, which is what a transport does that writes
every message at once; for picows, which has no sans-IO API, its
``WSTransport.send`` into a transport whose ``write`` is ``list.append``
(the cheapest writer there is: a C method, no Python frame). Servers send
unmasked frames, clients masked ones with a fresh key each (RFC 6455 §5.3).
Frames per second is 10,000 over the median in the table of report.py.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.uri import parse_uri
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, TextMessage

from wsstack.connection import ClientConnection, Connection, ServerConnection, State
from wsstack.handshake import accept_key

FRAMES = 10_000
TEXT = "{'id': 1234, 'op': 'update', 'path': '/a/b', 'value': " + "x" * 70 + "}"
BINARY = bytes(range(125))
assert len(TEXT.encode()) == len(BINARY) == 125


def open_wsstack(client: bool) -> Connection:
    if not client:
        return ServerConnection(state=State.OPEN)
    conn = ClientConnection("ws://127.0.0.1/")
    request = conn.data_to_send().decode("latin-1")
    key = next(
        line.split(":", 1)[1].strip() for line in request.split("\r\n") if line.lower().startswith("sec-websocket-key:")
    )
    conn.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )
    conn.events()
    assert conn.state is State.OPEN
    return conn


def wsstack_sender(client: bool, text: bool) -> Callable[[], int]:
    conn = open_wsstack(client)
    send = conn.send_text if text else conn.send
    take = conn.data_to_send
    message: Any = TEXT if text else BINARY

    def run() -> int:
        size = 0
        for _ in range(FRAMES):
            send(message)
            size += len(take())
        return size

    return run


def websockets_sender(client: bool, text: bool) -> Callable[[], int]:
    proto: ServerProtocol | ClientProtocol
    proto = (
        ClientProtocol(parse_uri("ws://127.0.0.1/"), state=WsState.OPEN)
        if client
        else ServerProtocol(state=WsState.OPEN)
    )
    send = proto.send_text if text else proto.send_binary
    take = proto.data_to_send
    message = TEXT.encode() if text else BINARY  # websockets takes the UTF-8 bytes of a text message

    def run() -> int:
        size = 0
        for _ in range(FRAMES):
            send(message)
            size += sum(map(len, take()))
        return size

    return run


def wsproto_sender(client: bool, text: bool) -> Callable[[], int]:
    conn = WsprotoConnection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
    send = conn.send

    def run() -> int:
        size = 0
        for _ in range(FRAMES):
            size += len(send(TextMessage(data=TEXT) if text else BytesMessage(data=BINARY)))
        return size

    return run


class _ListTransport:
    """What picows's WSTransport needs of an asyncio transport, writing into a list."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.write = self.written.append
        self._socket = socket.socket()

    def close(self) -> None:
        self._socket.close()

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._socket if name == "socket" else default


def picows_sender(client: bool, text: bool) -> Callable[[], int]:
    import asyncio

    import picows

    loop = asyncio.new_event_loop()
    underlying = _ListTransport()
    transport = picows.WSTransport(client, underlying, logging.getLogger("bench"), loop)
    underlying.close()  # picows keeps only the descriptor's number, for its own writes it does not make here
    send = transport.send
    kind = picows.WSMsgType.TEXT if text else picows.WSMsgType.BINARY
    message: Any = TEXT if text else BINARY
    written = underlying.written

    def run() -> int:
        for _ in range(FRAMES):
            send(kind, message)
        size = sum(map(len, written))
        written.clear()
        return size

    return run


SENDERS: dict[str, Callable[[bool, bool], Callable[[], int]]] = {
    "wsstack": wsstack_sender,
    "websockets": websockets_sender,
    "wsproto": wsproto_sender,
    "picows": picows_sender,
}


@pytest.mark.parametrize("library", list(SENDERS))
@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("side", ["server", "client"])
def test_serialize_small_frames(benchmark: Any, side: str, kind: str, library: str) -> None:
    client = side == "client"
    run = SENDERS[library](client, kind == "text")
    benchmark.group = f"serialize 10k x 125 B {kind} ({side})"
    header = 2 + (4 if client else 0)
    assert benchmark(run) == FRAMES * (header + 125)
