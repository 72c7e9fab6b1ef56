"""Shared helpers for tests that drive connections in memory."""

from __future__ import annotations

from wsstack.connection import ClientConnection, Connection, ServerConnection, State
from wsstack.events import RequestReceived
from wsstack.options import Options


def open_server(options: Options | None = None) -> ServerConnection:
    """A server connection already past the handshake, reading masked client frames."""
    return ServerConnection(options, state=State.OPEN)


def open_pair(
    server_options: Options | None = None, client_options: Options | None = None, **client_kwargs: object
) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server that completed the opening handshake through each other's bytes."""
    client = ClientConnection("ws://example.com/chat", client_options, **client_kwargs)  # type: ignore[arg-type]
    server = ServerConnection(server_options)
    server.receive_data(client.data_to_send())
    events = server.events()
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    server.accept()
    client.receive_data(server.data_to_send())
    client.events()
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def transfer(sender: Connection, receiver: Connection) -> list[object]:
    """Move everything ``sender`` has queued into ``receiver``; return the receiver's events."""
    receiver.receive_data(sender.data_to_send())
    return receiver.events()


def masked(first_byte: int, payload: bytes, key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A client-to-server frame built by hand, independent of the code under test."""
    n = len(payload)
    if n < 126:
        header = bytes((first_byte, 0x80 | n))
    elif n < 65536:
        header = bytes((first_byte, 0xFE)) + n.to_bytes(2, "big")
    else:
        header = bytes((first_byte, 0xFF)) + n.to_bytes(8, "big")
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def unmasked(first_byte: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((first_byte, n))
    elif n < 65536:
        header = bytes((first_byte, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first_byte, 127)) + n.to_bytes(8, "big")
    return header + payload
