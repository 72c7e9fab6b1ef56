"""Random interleavings of sends, deliveries, pings, closes, failures, garbage and EOF on a client/server pair.

The invariants: nothing but typed errors ever escapes, no event follows the
event that ends a connection, every close code reported is one the
protocol allows, and as long as the wire is clean every message arrives
intact and in order.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from helpers import open_pair
from wsstack.connection import Connection, State
from wsstack.errors import ConnectionClosed, InvalidState
from wsstack.events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    LocalFailure,
    Ping,
    Pong,
    ProtocolFailure,
    TextMessage,
)
from wsstack.frames import is_sendable_close_code
from wsstack.options import Options

ENDINGS = (CloseReceived, ProtocolFailure, LocalFailure, ConnectionLost)
ALLOWED = (TextMessage, BinaryMessage, Ping, Pong, *ENDINGS)
sides = st.sampled_from(["client", "server"])


class ConnectionPair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        options = Options(max_message_size=4096, max_fragments=64)
        self.client, self.server = open_pair(options, options)
        self.conns: dict[str, Connection] = {"client": self.client, "server": self.server}
        self.wire: dict[str, bytearray] = {
            "client": bytearray(),
            "server": bytearray(),
        }  # bytes on the way to that side
        self.sent: dict[str, list[object]] = {"client": [], "server": []}  # messages sent *to* that side
        self.received: dict[str, list[object]] = {"client": [], "server": []}
        self.ended: dict[str, bool] = {"client": False, "server": False}
        self.clean = True

    def other(self, side: str) -> str:
        return "server" if side == "client" else "client"

    def pump_out(self, side: str) -> None:
        self.wire[self.other(side)] += self.conns[side].data_to_send()

    def collect(self, side: str) -> None:
        for event in self.conns[side].events():
            assert isinstance(event, ALLOWED), event
            assert not self.ended[side], f"{event!r} after the end of the {side}"
            if isinstance(event, ENDINGS):
                self.ended[side] = True
                code = self.conns[side].close_code
                assert code is not None and (is_sendable_close_code(code) or code in (1005, 1006)), code
            if isinstance(event, (TextMessage, BinaryMessage)):
                self.received[side].append(event.data)
        self.pump_out(side)

    @rule(
        side=sides,
        message=st.one_of(st.text(max_size=100), st.binary(max_size=100)),
        fragment=st.none() | st.integers(1, 40),
    )
    def send(self, side: str, message: str | bytes, fragment: int | None) -> None:
        conn = self.conns[side]
        try:
            conn.send(message, fragment_size=fragment)
        except (ConnectionClosed, InvalidState):
            assert conn.state is not State.OPEN
            return
        self.sent[self.other(side)].append(message)
        self.pump_out(side)

    @rule(side=sides, data=st.binary(max_size=125))
    def ping(self, side: str, data: bytes) -> None:
        try:
            self.conns[side].ping(data)
        except ConnectionClosed:
            assert self.conns[side].state is not State.OPEN
        self.pump_out(side)

    @rule(side=sides, code=st.sampled_from([1000, 1001, 3000, 4999, None]), reason=st.text(max_size=20))
    def close(self, side: str, code: int | None, reason: str) -> None:
        if code is None:
            reason = ""
        try:
            self.conns[side].close(code, reason)
        except ValueError:
            assert len(reason.encode()) > 123
        self.pump_out(side)

    @rule(side=sides)
    def fail(self, side: str) -> None:
        conn = self.conns[side]
        was_closed = conn.state is State.CLOSED
        conn.fail(1011, "gave up")
        if not was_closed:
            assert conn.state is State.CLOSED and conn.close_code == 1011
        self.collect(side)

    @precondition(lambda self: any(self.wire.values()))
    @rule(side=sides, amount=st.integers(1, 300))
    def deliver(self, side: str, amount: int) -> None:
        chunk = bytes(self.wire[side][:amount])
        del self.wire[side][:amount]
        if chunk:
            self.conns[side].receive_data(chunk)
            self.collect(side)

    @rule(side=sides, garbage=st.binary(min_size=1, max_size=40))
    def inject(self, side: str, garbage: bytes) -> None:
        self.clean = False
        self.wire[side] += garbage

    @rule(side=sides)
    def eof(self, side: str) -> None:
        self.clean = False
        self.wire[side].clear()
        self.conns[side].receive_data(b"")
        self.collect(side)

    @invariant()
    def messages_arrive_in_order(self) -> None:
        if self.clean:
            for side in ("client", "server"):
                got = self.received[side]
                assert got == self.sent[side][: len(got)]

    @invariant()
    def closed_state_is_final(self) -> None:
        for side, conn in self.conns.items():
            if self.ended[side]:
                assert conn.state is State.CLOSED


ConnectionPair.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestConnectionPair = ConnectionPair.TestCase
