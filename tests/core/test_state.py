"""The state table, and a connection driven through every (state, trigger) pair of it.

Each state is reached through the public API, each trigger is made the way
a transport or a peer makes it (a call, or bytes), and the connection must
land where ``TRANSITIONS`` says, or refuse the call with ``InvalidState``
and change nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from helpers import masked, open_pair, unmasked
from wsstack.connection import ClientConnection, Connection, ServerConnection
from wsstack.errors import InvalidState
from wsstack.events import (
    CloseReceived,
    ConnectionLost,
    HandshakeComplete,
    HandshakeFailed,
    LocalFailure,
    ProtocolFailure,
    RequestReceived,
)
from wsstack.http11 import Headers, Response, serialize_request
from wsstack.state import TRANSITIONS, State, Trigger, next_state

UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
PAGE = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"

# -- the table on its own


@pytest.mark.parametrize(
    ("state", "trigger"), list(itertools.product(State, Trigger)), ids=lambda v: getattr(v, "name", str(v))
)
def test_next_state_follows_the_table_or_refuses(state: State, trigger: Trigger) -> None:
    if (state, trigger) in TRANSITIONS:
        assert next_state(state, trigger) is TRANSITIONS[state, trigger]
    else:
        with pytest.raises(InvalidState, match=f"cannot {trigger.value} in state {state.name}"):
            next_state(state, trigger)


def test_states_keep_their_order() -> None:
    assert list(State) == sorted(State)
    assert [s.name for s in State] == ["CONNECTING", "REQUEST_RECEIVED", "KEEP_ALIVE", "OPEN", "CLOSING", "CLOSED"]
    assert all(s < State.OPEN for s in (State.CONNECTING, State.REQUEST_RECEIVED, State.KEEP_ALIVE))


def test_every_state_is_reachable_and_the_end_of_the_stream_ends_every_one() -> None:
    reached = {State.CONNECTING}
    frontier = [State.CONNECTING]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(State)
    assert all(TRANSITIONS[state, Trigger.EOF] is State.CLOSED for state in State)


def test_nothing_leaves_closed() -> None:
    assert all(target is State.CLOSED for (source, _), target in TRANSITIONS.items() if source is State.CLOSED)


# -- connections in each state, through the public API


def server_in(state: State) -> ServerConnection:
    server = ServerConnection()
    if state is State.CONNECTING:
        return server
    if state is State.KEEP_ALIVE:
        server.receive_data(PAGE)
        server.respond(Response(200, "OK", Headers()))
    else:
        server.receive_data(UPGRADE)
        if state is not State.REQUEST_RECEIVED:
            server.accept()
            if state is State.CLOSING:
                server.close()
            elif state is State.CLOSED:
                server.receive_data(b"")
    server.events()
    server.data_to_send()
    assert server.state is state
    return server


def client_in(state: State) -> ClientConnection:
    if state is State.CONNECTING:
        client = ClientConnection("ws://example.com/")
    else:
        client, _ = open_pair()
        if state is State.CLOSING:
            client.close()
        elif state is State.CLOSED:
            client.receive_data(b"")
    client.events()
    client.data_to_send()
    assert client.state is state
    return client


SERVER_STATES = list(State)
CLIENT_STATES = [State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED]


def answer_to(client: ClientConnection) -> bytes:
    """A real server's 101 to the client's request (``request()`` repeats it with the same key)."""
    server = ServerConnection()
    server.receive_data(serialize_request(client.handshake.request()))
    server.accept()
    return server.data_to_send()


# -- triggers the application makes: every state, moved or refused

CALLS: dict[Trigger, Callable[[Connection], None]] = {
    Trigger.ACCEPT: lambda conn: conn.accept(),  # type: ignore[attr-defined]
    Trigger.RESPOND_KEEP_ALIVE: lambda conn: conn.respond(Response(200, "OK", Headers()), keep_alive=True),  # type: ignore[attr-defined]
    Trigger.RESPOND_CLOSE: lambda conn: conn.reject(403),  # type: ignore[attr-defined]
    Trigger.SEND_CLOSE: lambda conn: conn.close(),
    Trigger.FAIL: lambda conn: conn.fail(),
}
SERVER_ONLY = {Trigger.ACCEPT, Trigger.RESPOND_KEEP_ALIVE, Trigger.RESPOND_CLOSE}

CALL_CASES = [("server", s, t) for s in SERVER_STATES for t in CALLS] + [
    ("client", s, t) for s in CLIENT_STATES for t in CALLS if t not in SERVER_ONLY
]


def case_id(case: tuple[str, State, Trigger]) -> str:
    side, state, trigger = case
    return f"{side}-{state.name}-{trigger.name}"


@pytest.mark.parametrize(("side", "state", "trigger"), CALL_CASES, ids=list(map(case_id, CALL_CASES)))
def test_calls_move_as_the_table_says_or_raise_invalid_state(side: str, state: State, trigger: Trigger) -> None:
    conn: Connection = server_in(state) if side == "server" else client_in(state)
    target = TRANSITIONS.get((state, trigger))
    if target is None:
        with pytest.raises(InvalidState):
            CALLS[trigger](conn)
        assert conn.state is state
        assert conn.data_to_send() == b"" and conn.events() == []
        return
    CALLS[trigger](conn)
    assert conn.state is target
    out, events = conn.data_to_send(), conn.events()
    if target is state:
        assert out == b"" and events == []  # allowed, with nothing left to do
        return
    assert out.startswith(WRITES[trigger]) or (trigger is Trigger.FAIL and state is State.CLOSING and out == b"")
    assert events == ([LocalFailure(1011, "")] if trigger is Trigger.FAIL else [])


# What each call that moves writes first (a failure while closing has sent its close frame already).
WRITES = {
    Trigger.ACCEPT: b"HTTP/1.1 101 ",
    Trigger.RESPOND_KEEP_ALIVE: b"HTTP/1.1 200 ",
    Trigger.RESPOND_CLOSE: b"HTTP/1.1 403 ",
    Trigger.SEND_CLOSE: b"\x88",
    Trigger.FAIL: b"\x88",
}


# -- triggers the peer makes: every pair of the table, from bytes

WIRE: dict[Trigger, Callable[[Connection], bytes]] = {
    Trigger.REQUEST: lambda conn: UPGRADE,
    Trigger.HANDSHAKE_COMPLETE: lambda conn: answer_to(conn),  # type: ignore[arg-type]
    Trigger.HANDSHAKE_FAILED: lambda conn: (
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" if conn.is_client else b"GET / HTTP/1.1\r\nBad\r\n\r\n"
    ),
    Trigger.RECEIVE_CLOSE: lambda conn: (unmasked if conn.is_client else masked)(0x88, b"\x03\xe8"),
    Trigger.PROTOCOL_ERROR: lambda conn: (unmasked if conn.is_client else masked)(0x83, b""),
    Trigger.EOF: lambda conn: b"",
}
# The event each move from the peer reports (the stays report nothing).
REPORTS = {
    Trigger.REQUEST: RequestReceived,
    Trigger.HANDSHAKE_COMPLETE: HandshakeComplete,
    Trigger.HANDSHAKE_FAILED: HandshakeFailed,
    Trigger.RECEIVE_CLOSE: CloseReceived,
    Trigger.PROTOCOL_ERROR: ProtocolFailure,
}


def wire_cases() -> list[tuple[str, State, Trigger]]:
    cases = []
    for state, trigger in TRANSITIONS:
        if trigger in CALLS:
            continue
        if state in CLIENT_STATES and trigger is not Trigger.REQUEST:
            cases.append(("client", state, trigger))
        if trigger is not Trigger.HANDSHAKE_COMPLETE:
            cases.append(("server", state, trigger))
    return cases


def test_every_pair_of_the_table_is_driven() -> None:
    driven = {(state, trigger) for _, state, trigger in wire_cases() + CALL_CASES}
    assert set(TRANSITIONS) <= driven
    assert set(WIRE) | set(CALLS) == set(Trigger)


@pytest.mark.parametrize(("side", "state", "trigger"), wire_cases(), ids=list(map(case_id, wire_cases())))
def test_bytes_from_the_peer_move_as_the_table_says(side: str, state: State, trigger: Trigger) -> None:
    conn: Connection = server_in(state) if side == "server" else client_in(state)
    target = TRANSITIONS[state, trigger]
    conn.receive_data(WIRE[trigger](conn))
    assert conn.state is target
    events = conn.events()
    if target is state:
        assert events == []
    elif trigger is Trigger.EOF:
        expected = ConnectionLost if state >= State.OPEN else HandshakeFailed
        if conn.is_client or state >= State.OPEN:
            assert [type(e) for e in events] == [expected]
        else:
            assert events == []  # a server has nobody to tell that no request came
        assert conn.close_code == 1006
    else:
        assert [type(e) for e in events] == [REPORTS[trigger]]


def test_bytes_after_a_waiting_request_are_kept_for_after_the_answer() -> None:
    server = server_in(State.REQUEST_RECEIVED)
    server.receive_data(masked(0x81, b"early"))
    assert server.state is State.REQUEST_RECEIVED and server.events() == []
    server.accept()
    assert [type(e).__name__ for e in server.events()] == ["TextMessage"]


def test_keep_alive_reads_the_next_request() -> None:
    server = server_in(State.KEEP_ALIVE)
    server.receive_data(UPGRADE[:20])
    assert server.state is State.KEEP_ALIVE
    server.receive_data(UPGRADE[20:])
    assert server.state is State.REQUEST_RECEIVED
    [event] = server.events()
    assert isinstance(event, RequestReceived) and event.request.path == "/chat"


@pytest.mark.parametrize("state", [State.REQUEST_RECEIVED, State.KEEP_ALIVE, State.CLOSING, State.CLOSED])
def test_a_connection_starts_only_where_the_table_begins(state: State) -> None:
    with pytest.raises(ValueError, match="starts CONNECTING or OPEN"):
        ServerConnection(state=state)


def test_fail_takes_an_int_close_code() -> None:
    server = ServerConnection(state=State.OPEN)
    with pytest.raises(TypeError, match="int close code"):
        server.fail(None)  # type: ignore[arg-type]
    assert server.state is State.OPEN and server.data_to_send() == b""
