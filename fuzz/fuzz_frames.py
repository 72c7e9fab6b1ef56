"""atheris target: any bytes after the handshake, split anywhere, into both sides' frame parsers.

    python fuzz/fuzz_frames.py -max_total_time=600 [corpus_dir]

A finding is any exception other than the core's own handling: the core
must turn every input into events and close frames.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wsstack.connection import ClientConnection, ServerConnection, State
    from wsstack.events import ProtocolFailure
    from wsstack.options import Options

OPTIONS = Options(max_message_size=1 << 16, max_fragments=32, enable_compression=True)


def make(side: int) -> ServerConnection | ClientConnection:
    if side:
        return ServerConnection(OPTIONS, state=State.OPEN)
    client = ClientConnection("ws://fuzz.invalid/", OPTIONS)
    client.data_to_send()
    client.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + _accept(client).encode() + b"\r\n\r\n"
    )
    client.events()
    return client


def _accept(client: ClientConnection) -> str:
    from wsstack.handshake import accept_key

    return accept_key(client.handshake.key)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    conn = make(provider.ConsumeIntInRange(0, 1))
    conn.frame_mode = provider.ConsumeBool()
    while provider.remaining_bytes():
        chunk = provider.ConsumeBytes(provider.ConsumeIntInRange(1, 512))
        conn.receive_data(chunk)
        for event in conn.events():
            if isinstance(event, ProtocolFailure):
                assert event.code in (1002, 1007, 1009), event
        conn.data_to_send()
    conn.receive_data(b"")
    conn.events()
    assert conn.state is State.CLOSED


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
