"""One broadcast message, encoded once per kind of connection."""

from __future__ import annotations

import pytest

from helpers import open_pair, open_server
from wsstack.connection import Connection, State
from wsstack.events import BinaryMessage, TextMessage
from wsstack.options import Options
from wsstack.session import SharedFrames, broadcast


class Receiver:
    """A connection as ``broadcast`` sees it: a core and a flag for a full write buffer."""

    def __init__(self, core: Connection, full: bool = False) -> None:
        self.core = core
        self.full = full
        self.written: list[bytes] = []

    def write_shared(self, frames: SharedFrames) -> bool:
        if self.full or self.core.state is not State.OPEN:
            return False
        self.written.append(frames.frame_for(self.core))
        return True


def test_plain_server_connections_share_one_frame_object() -> None:
    frames = SharedFrames("hello")
    first, second = open_server(), open_server()
    assert frames.frame_for(first) is frames.frame_for(second)
    assert frames.frame_for(first) == b"\x81\x05hello"


def test_client_connections_mask_their_own() -> None:
    frames = SharedFrames(b"\x00\x01")
    client, server = open_pair()
    frame = frames.frame_for(client)
    assert frame[1] & 0x80  # masked
    server.receive_data(frame)
    assert server.events() == [BinaryMessage(b"\x00\x01")]


def test_compressed_connections_without_context_takeover_share_a_compressed_frame() -> None:
    options = Options(enable_compression=True, server_no_context_takeover=True)
    pairs = [open_pair(options, options) for _ in range(2)]
    frames = SharedFrames("compress me " * 20)
    built = [frames.frame_for(server) for _, server in pairs]
    assert built[0] is built[1] and built[0][0] & 0x40  # RSV1: compressed
    for (client, _), frame in zip(pairs, built, strict=True):
        client.receive_data(frame)
        assert client.events() == [TextMessage("compress me " * 20)]


def test_compressed_connections_with_context_encode_their_own() -> None:
    options = Options(enable_compression=True)
    (client, server) = open_pair(options, options)
    if server.extensions and server.extensions[0].shared_encoding() is not None:
        pytest.fail("a connection that keeps its compression context cannot share frames")
    frames = SharedFrames("again " * 20)
    for _ in range(2):
        client.receive_data(frames.frame_for(server))
        assert client.events() == [TextMessage("again " * 20)]


def test_broadcast_skips_full_and_closed_receivers_and_counts_the_rest() -> None:
    ready, full, closed = Receiver(open_server()), Receiver(open_server(), full=True), Receiver(open_server())
    closed.core.close()
    assert broadcast({ready, full, closed}, "news") == 1
    assert ready.written == [b"\x81\x04news"] and full.written == [] and closed.written == []


def test_broadcast_takes_only_messages() -> None:
    for value in (42, True, {}, None):
        with pytest.raises(
            TypeError, match=f"broadcast\\(\\) takes str or a bytes-like object, not {type(value).__name__}"
        ):
            broadcast([], value)  # type: ignore[arg-type]
