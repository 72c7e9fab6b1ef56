"""``receive_data`` keeps no reference to the buffer it was given.

The asyncio transports read into one scratch buffer per thread and hand the
core a view of it, so the core must copy whatever it keeps (a partial frame,
a message's fragments, the rest of an HTTP head) before it returns. Each
example feeds a handshake and a conversation in pieces through a view of
one scratch buffer that is overwritten after every call, as the next read
would overwrite it; the events are taken only at the very end, so a
reference kept anywhere shows up as changed content.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsstack.connection import ClientConnection, Connection, ServerConnection
from wsstack.events import BinaryMessage, CloseReceived, TextMessage
from wsstack.options import Options

MESSAGES = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=70_000)),
    min_size=1,
    max_size=6,
)


def conversation(
    messages: list[str | bytes], compressed: bool, fragment_size: int | None, from_client: bool
) -> tuple[list[bytes], Connection]:
    """What the receiver reads (the handshake, then the messages and a close), and the receiver."""
    options = Options(enable_compression=compressed)
    client = ClientConnection("ws://example.com/chat", options)
    server = ServerConnection(options)
    request = client.data_to_send()
    server.receive_data(request)
    server.events()
    server.accept()
    response = server.data_to_send()
    if from_client:
        client.receive_data(response)
        client.events()
        sender: Connection = client
        receiver: Connection = ServerConnection(options)
        head = request
    else:
        sender, receiver, head = server, client, response
    for message in messages:
        sender.send(message, fragment_size)
    sender.close(1000, "bye")
    return [head, sender.data_to_send()], receiver


def feed_through_scratch(receiver: Connection, parts: list[bytes], cuts: list[int]) -> list[object]:
    """Feed each part in pieces through one buffer, overwritten after every call; the events at the end."""
    scratch = bytearray(max(len(part) for part in parts))
    view = memoryview(scratch)
    for index, part in enumerate(parts):
        bounds = [0, *sorted({cut % (len(part) + 1) for cut in cuts}), len(part)]
        for start, end in itertools.pairwise(bounds):
            if start == end:
                continue
            view[: end - start] = part[start:end]
            receiver.receive_data(view[: end - start])
            view[:] = b"\xaa" * len(scratch)
        if index == 0 and isinstance(receiver, ServerConnection):
            receiver.accept()
            receiver.data_to_send()
    return receiver.events()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=MESSAGES,
    compressed=st.booleans(),
    fragment_size=st.one_of(st.none(), st.integers(1, 40_000)),
    from_client=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=12),
)
def test_events_do_not_change_when_the_read_buffer_is_reused(
    messages: list[str | bytes], compressed: bool, fragment_size: int | None, from_client: bool, cuts: list[int]
) -> None:
    parts, receiver = conversation(messages, compressed, fragment_size, from_client)
    events = feed_through_scratch(receiver, parts, cuts)
    received = [event.data for event in events if isinstance(event, (TextMessage, BinaryMessage))]
    assert received == messages
    assert [(event.code, event.reason) for event in events if isinstance(event, CloseReceived)] == [(1000, "bye")]
    assert bool(receiver.extensions) is compressed
