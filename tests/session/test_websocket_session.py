"""The session layer's rules for one connection, driven in memory with a clock passed in."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import masked, open_pair, open_server, transfer
from wsstack.connection import State
from wsstack.errors import ConnectionClosed, InvalidState
from wsstack.frames import Frame, Opcode
from wsstack.options import Options
from wsstack.session import Action, WebSocketSession


def text(payload: bytes) -> bytes:
    return masked(0x81, payload)


def session_for(**options: Any) -> WebSocketSession:
    return WebSocketSession(open_server(Options(**options)))


# -- the receive queue and its bounds


def test_messages_are_queued_and_wake_the_receiver() -> None:
    session = session_for()
    actions = session.receive_data(text(b"one") + text(b"two"))
    assert actions == Action.WAKE
    assert list(session.queue) == ["one", "two"]


def test_reading_pauses_at_max_queue_and_resumes_at_half() -> None:
    session = session_for(max_queue=4)
    assert session.receive_data(text(b"a") * 3) == Action.WAKE
    assert session.receive_data(text(b"b")) == Action.WAKE | Action.PAUSE_READING
    assert session.reading_paused
    # Already paused: more data (what one read had in flight) pauses nothing twice.
    assert session.receive_data(text(b"c")) == Action.WAKE
    session.queue.popleft()
    session.queue.popleft()
    assert session.taken() == 0  # three left: above half of four
    session.queue.popleft()
    assert session.taken() == Action.RESUME_READING
    assert not session.reading_paused
    assert session.taken() == 0


def test_while_closing_reading_goes_on_and_the_queue_stays_bounded() -> None:
    """The rule both transports now share: after our close, extra messages are dropped, not queued."""
    session = session_for(max_queue=3)
    session.close(1000, "")
    assert session.core.state is State.CLOSING
    actions = session.receive_data(text(b"x") * 10)
    assert not actions & Action.PAUSE_READING
    assert list(session.queue) == ["x"] * 3
    actions = session.receive_data(masked(0x88, b"\x03\xe8"))
    assert actions & Action.CLOSE_TCP
    assert len(session.queue) == 3


def test_close_resumes_a_paused_reader_for_the_peers_close_frame() -> None:
    session = session_for(max_queue=1)
    assert session.receive_data(text(b"a")) & Action.PAUSE_READING
    assert session.close(1000, "bye") & Action.RESUME_READING
    assert not session.reading_paused


def test_an_inline_consumer_never_pauses_for_the_queue() -> None:
    session = session_for(max_queue=2)
    session.set_inline_consumer(True)
    assert session.receive_data(text(b"m") * 50) == Action.WAKE
    assert not session.reading_paused


def test_an_inline_consumer_pauses_reading_while_writing_is_paused() -> None:
    session = session_for()
    session.set_inline_consumer(True)
    assert session.pause_writing() == Action.PAUSE_READING
    session.queue.clear()
    assert session.taken() == 0  # the replies are still backlogged
    assert session.resume_writing() == Action.RESUME_READING
    assert not session.reading_paused


def test_becoming_inline_while_writing_is_paused_pauses_reading() -> None:
    session = session_for()
    assert session.pause_writing() == 0  # a recv() loop waits in send() instead
    assert session.set_inline_consumer(True) == Action.PAUSE_READING
    assert session.set_inline_consumer(False) == Action.RESUME_READING


def test_a_clients_inline_consumer_reads_on_while_writing_is_paused() -> None:
    """Only the server pauses for its replies: a client that did too would deadlock with a pipelining peer."""
    client, _ = open_pair()
    session = WebSocketSession(client)
    session.set_inline_consumer(True)
    assert session.pause_writing() == 0
    assert not session.reading_paused
    assert session.set_inline_consumer(False) == 0
    assert session.set_inline_consumer(True) == 0
    assert session.resume_writing() == 0


def test_pongs_wait_while_writing_is_paused_and_only_the_latest_goes_out() -> None:
    session = session_for()
    session.pause_writing()
    session.receive_data(masked(0x89, b"1") + masked(0x89, b"2"))
    assert session.core.data_to_send() == b""
    session.resume_writing()
    assert session.core.data_to_send() == b"\x8a\x012"


def test_waiting_reports_the_end_once_nothing_more_can_come() -> None:
    session = session_for()
    assert session.waiting() == 0
    session.receive_data(masked(0x88, b"\x03\xe8"))
    assert session.waiting() == Action.ENDED


def test_frame_mode_turns_queued_messages_into_frames_in_place() -> None:
    session = session_for()
    queue = session.queue
    session.receive_data(text(b"hi") + masked(0x82, b"\x00\x01"))
    session.enter_frame_mode()
    assert session.queue is queue
    assert [(f.opcode, f.payload) for f in queue] == [(Opcode.TEXT, b"hi"), (Opcode.BINARY, b"\x00\x01")]
    session.receive_data(masked(0x89, b"p"))
    assert isinstance(queue[-1], Frame) and queue[-1].opcode == Opcode.PING
    session.enter_frame_mode()  # a second call changes nothing
    assert len(queue) == 3


# -- one receiver at a time


def test_a_second_receiver_is_refused_while_one_waits() -> None:
    session = session_for()
    first, second = object(), object()
    session.start_receiving(first)
    with pytest.raises(InvalidState, match="another recv\\(\\) is already waiting"):
        session.start_receiving(second)
    with pytest.raises(InvalidState, match="already waiting"):
        session.enter_frame_mode()  # the waiting recv() would get a frame
    assert not session.core.frame_mode
    session.stop_receiving(first)  # the transport's part, when that recv() returns
    session.start_receiving(second)
    assert session.receiving is second


def test_a_receiver_taking_a_cancelled_ones_place_is_not_ended_by_it() -> None:
    session = session_for()
    first, second, third = object(), object(), object()
    session.start_receiving(first)
    session.receiver_cancelled()  # its wait was cancelled; its task has yet to leave recv()
    session.start_receiving(second)
    session.stop_receiving(first)  # the cancelled one leaves: the second one still waits
    assert session.receiving is second
    with pytest.raises(InvalidState):
        session.start_receiving(third)


# -- pings


def test_a_pong_settles_its_ping_and_every_earlier_one_with_round_trip_times() -> None:
    client, server = open_pair()
    session = WebSocketSession(server)
    first, second, third = object(), object(), object()
    session.ping(b"1", first, now=10.0)
    session.ping(b"2", second, now=11.0)
    session.ping(b"3", third, now=12.0)
    transfer(server, client)  # the client answers each ping (auto_pong)
    client.data_to_send()
    client.pong(b"2")
    actions = session.receive_data(client.data_to_send())
    assert actions & Action.ACKNOWLEDGED
    assert session.take_acknowledged(now=15.0) == [(first, 5.0), (second, 4.0)]
    assert session.take_acknowledged(now=16.0) == []


def test_a_pong_nobody_asked_for_acknowledges_nothing() -> None:
    session = session_for()
    session.ping(b"mine", object(), now=0.0)
    assert not session.receive_data(masked(0x8A, b"other")) & Action.ACKNOWLEDGED


def test_a_pong_before_any_ping_acknowledges_nothing_in_either_mode() -> None:
    """No ping table exists until the first ping: an idle connection without a heartbeat never makes one."""
    session = session_for()
    assert session._pings is None
    assert session.receive_data(masked(0x8A, b"early")) == 0
    session.enter_frame_mode()
    assert session.receive_data(masked(0x8A, b"early")) == Action.WAKE
    assert session.queue.popleft().opcode == Opcode.PONG
    assert session.connection_lost()[1] == []
    assert session._pings is None


def test_ping_payloads_are_random_by_default_and_unique_while_pending() -> None:
    session = session_for()
    payload = session.ping(b"", object(), now=0.0)
    assert len(payload) == 4
    session.ping("same", object(), now=0.0)
    with pytest.raises(ValueError, match="already waiting"):
        session.ping(b"same", object(), now=0.0)


@pytest.mark.parametrize("value", [42, True, None, {}], ids=repr)
def test_a_ping_of_something_not_bytes_like_is_refused_before_anything_is_sent(value: Any) -> None:
    session = session_for()
    with pytest.raises(TypeError, match=rf"^ping\(\) takes str or a bytes-like object, not {type(value).__name__}$"):
        session.ping(value, object(), now=0.0)
    assert session.core.data_to_send() == b""
    session.ping(bytearray(b"42"), object(), now=0.0)  # and the table is still usable
    assert session.core.data_to_send() == b"\x89\x0242"


def test_pending_pings_are_returned_to_fail_when_the_connection_is_lost() -> None:
    session = session_for()
    waiter = object()
    session.ping(b"x", waiter, now=0.0)
    error, waiters = session.connection_lost()
    assert isinstance(error, ConnectionClosed) and error.code == 1006
    assert waiters == [waiter]
    assert session.lost


# -- heartbeat


def test_the_heartbeat_pings_every_interval_after_the_last_answer() -> None:
    client, server = open_pair(Options(ping_interval=5.0, ping_timeout=2.0))
    session = WebSocketSession(server)
    assert session.heartbeat_start(100.0) == 105.0
    assert session.heartbeat(104.0) == (0, 105.0)  # early: nothing to do yet
    actions, when = session.heartbeat(105.0)
    assert (actions, when) == (0, 107.0)
    events = transfer(server, client)
    assert [type(e).__name__ for e in events] == ["Ping"]
    pong = client.data_to_send()
    assert session.receive_data(pong) == Action.ACKNOWLEDGED | Action.HEARTBEAT
    assert session.take_acknowledged(106.0) == []  # the heartbeat's own ping settles nobody
    assert session.heartbeat_due == 111.0  # answered at 106: the timer is re-armed for five seconds later
    assert session.heartbeat(107.0) == (0, 111.0)


def test_an_unanswered_heartbeat_fails_the_connection_with_1011() -> None:
    client, server = open_pair(Options(ping_interval=5.0, ping_timeout=2.0))
    session = WebSocketSession(server)
    session.heartbeat_start(0.0)
    session.heartbeat(5.0)
    assert session.heartbeat(6.9)[0] == 0  # not yet
    actions, when = session.heartbeat(7.0)
    assert actions == Action.CLOSE_TCP | Action.WAKE and when is None  # a waiting recv() learns at once
    assert server.state is State.CLOSED and server.close_code == 1011
    events = transfer(server, client)
    assert any(getattr(e, "code", None) == 1011 for e in events)


def test_a_peer_that_sends_after_the_ping_is_given_another_timeout_not_failed() -> None:
    """Its pong may be queued behind its data; only a whole timeout of silence fails it."""
    client, server = open_pair(Options(ping_interval=5.0, ping_timeout=2.0))
    session = WebSocketSession(server)
    session.heartbeat_start(0.0)
    assert session.heartbeat(5.0) == (0, 7.0)
    assert server.data_to_send()[0] == 0x89  # the ping, still on its way to the client
    client.send_text("busy")
    session.receive_data(client.data_to_send())
    assert session.heartbeat(7.0) == (0, 9.0)
    assert server.state is State.OPEN and server.data_to_send() == b""  # no second ping meanwhile
    actions, when = session.heartbeat(9.0)  # then two seconds of silence
    assert actions & Action.CLOSE_TCP and when is None
    assert server.close_code == 1011


def test_while_reading_is_paused_the_heartbeat_neither_pings_nor_fails() -> None:
    """The application is behind and reading paused: the pong may be unread in the socket."""
    client, server = open_pair(Options(ping_interval=5.0, ping_timeout=2.0, max_queue=1))
    session = WebSocketSession(server)
    session.heartbeat_start(0.0)
    assert session.receive_data(masked(0x81, b"unread")) & Action.PAUSE_READING
    assert session.heartbeat(5.0) == (0, 10.0)
    assert server.data_to_send() == b""  # no ping whose pong could not be read
    session.queue.popleft()
    assert session.taken() == Action.RESUME_READING
    assert session.heartbeat(10.0) == (0, 12.0)  # reading again: it pings
    client.receive_data(server.data_to_send())
    assert session.receive_data(masked(0x81, b"again")) & Action.PAUSE_READING
    # The ping's timeout passes while paused: no verdict, and the clock starts again.
    assert session.heartbeat(12.0) == (0, 14.0)
    assert server.state is State.OPEN
    session.queue.popleft()
    session.taken()
    assert session.receive_data(client.data_to_send()) & Action.HEARTBEAT  # the pong, read at last
    assert server.state is State.OPEN


def test_a_peer_that_reads_nothing_is_judged_even_with_reading_paused() -> None:
    """Writing paused as well: the peer does not read what we send, and its silence counts."""
    _, server = open_pair(Options(ping_interval=5.0, ping_timeout=2.0, max_queue=1))
    session = WebSocketSession(server)
    session.heartbeat_start(0.0)
    session.heartbeat(5.0)
    assert session.receive_data(masked(0x81, b"unread")) & Action.PAUSE_READING
    session.pause_writing()
    assert session.heartbeat(7.0) == (0, 9.0)  # it sent that message after the ping: one more timeout
    actions, when = session.heartbeat(9.0)
    assert actions & Action.CLOSE_TCP and when is None
    assert server.close_code == 1011


def test_a_short_interval_pings_that_often_whatever_the_timeout() -> None:
    """The timer armed for the ping's timeout moves to the next ping once the pong is in."""
    client, server = open_pair(Options(ping_interval=0.2, ping_timeout=1.0))
    session = WebSocketSession(server)
    when = session.heartbeat_start(0.0)
    pings = 0
    while when is not None and when < 2.0:
        now = when
        _, when = session.heartbeat(now)
        ping = server.data_to_send()
        if ping:
            pings += 1
            client.receive_data(ping)
            now += 0.01  # the pong comes 10 ms later
            if session.receive_data(client.data_to_send()) & Action.HEARTBEAT:
                session.take_acknowledged(now)
                when = session.heartbeat_due  # where the transport re-arms its timer
    assert pings == 9  # one every 0.21 s: at 0.2, 0.41, ... 1.88


def test_without_a_ping_timeout_the_heartbeat_waits_for_its_pong() -> None:
    _, server = open_pair(Options(ping_interval=5.0, ping_timeout=None))
    session = WebSocketSession(server)
    session.heartbeat_start(0.0)
    assert session.heartbeat(5.0) == (0, 10.0)
    assert session.heartbeat(10.0) == (0, 15.0)  # still waiting; no second ping
    assert server.state is State.OPEN


def test_no_heartbeat_without_an_interval_or_once_closed() -> None:
    assert session_for(ping_interval=None).heartbeat_start(0.0) is None
    session = session_for(ping_interval=1.0)
    session.heartbeat_start(0.0)
    session.close(1000, "")
    assert session.heartbeat(5.0) == (0, None)


# -- held failures


def test_a_held_failure_waits_for_the_messages_before_it() -> None:
    core = open_server()
    core.hold_failures = True
    session = WebSocketSession(core)
    actions = session.receive_data(text(b"before") + masked(0x83, b""))  # then a reserved opcode
    assert actions & Action.HOLD and actions & Action.WAKE
    assert core.data_to_send() == b""  # no close frame yet
    assert session.queue.popleft() == "before"
    actions = session.waiting()
    assert actions & Action.CLOSE_TCP and actions & Action.ENDED
    assert core.data_to_send() == b"\x88\x11\x03\xeareserved opcode"


def test_a_failure_with_nothing_before_it_is_sent_at_once() -> None:
    core = open_server()
    core.hold_failures = True
    session = WebSocketSession(core)
    actions = session.receive_data(masked(0x83, b""))
    assert not actions & Action.HOLD and actions & Action.CLOSE_TCP
    assert core.data_to_send() == b"\x88\x11\x03\xeareserved opcode"


def test_an_inline_consumer_releases_a_held_failure_once_it_has_taken_everything() -> None:
    core = open_server()
    core.hold_failures = True
    session = WebSocketSession(core)
    session.set_inline_consumer(True)
    assert session.receive_data(text(b"before") + masked(0x83, b"")) & Action.HOLD
    assert session.drained() == 0  # the consumer has not taken the message yet
    session.queue.popleft()
    assert session.drained() & Action.CLOSE_TCP
    assert core.data_to_send().startswith(b"\x88")


def test_the_failure_timer_releases_a_held_failure() -> None:
    core = open_server()
    core.hold_failures = True
    session = WebSocketSession(core)
    session.receive_data(text(b"unread") + masked(0x83, b""))
    assert session.release_held_failure() & Action.CLOSE_TCP
    assert session.release_held_failure() == 0


# -- when TCP closes


def test_the_server_closes_tcp_at_once_and_the_client_lingers() -> None:
    client, server = open_pair()
    server_session, client_session = WebSocketSession(server), WebSocketSession(client)
    client_session.close(1000, "")
    actions = server_session.receive_data(client.data_to_send())
    assert actions & Action.CLOSE_TCP
    actions = client_session.receive_data(server.data_to_send())
    assert actions & Action.LINGER and not actions & Action.CLOSE_TCP


def test_a_client_that_fails_the_connection_closes_tcp_itself() -> None:
    client, _ = open_pair()
    session = WebSocketSession(client)
    actions = session.receive_data(b"\x83\x00")  # a reserved opcode from the server
    assert actions & Action.CLOSE_TCP


def test_nothing_more_is_decided_once_tcp_is_gone() -> None:
    session = session_for()
    session.connection_lost()
    assert session.receive_data(b"") == 0
