"""The connection's states and every move between them, as data.

Rules this module keeps:

* ``Connection.state`` changes only through ``next_state``: each change is
  a (state, trigger) pair of ``TRANSITIONS``, so the table is the whole
  life of a connection. A connection starts CONNECTING, or OPEN for one
  whose handshake happened elsewhere (the constructor allows no other
  state). What a state lets the application *do* without moving (send
  in OPEN only; read frames in OPEN and CLOSING) is written beside each
  state below and checked where it is done.
* A pair missing from the table is a call the state does not allow, and
  ``next_state`` raises ``InvalidState`` for it (``accept()`` with no
  request waiting, ``close()`` before the opening handshake). Triggers that
  come from the peer (bytes, EOF) have an entry in every state that reads
  them, so nothing a peer sends can raise out of the core.
* The states are ordered: every state below OPEN belongs to the opening
  handshake, so ``state < State.OPEN`` means "not open yet".
* A held failure (``hold_failures``) is not a state: the connection stays
  OPEN with the peer's error kept aside, so replies to what came before the
  error can still be sent; releasing it is the PROTOCOL_ERROR move.

The states:

CONNECTING
    Client: the upgrade request is sent, the answer is awaited. Server: the
    first request is being read.
REQUEST_RECEIVED
    Server: a complete request waits for ``accept``, ``respond`` or
    ``reject``; bytes that follow it are kept, unread, until then.
KEEP_ALIVE
    Server: a plain HTTP response went out with keep-alive; the next
    request is being read.
OPEN
    The opening handshake is done (RFC 6455 §4); frames flow both ways.
CLOSING
    We sent a close frame (§7.1.2): nothing more may be sent, frames are
    still read until the peer's close frame answers ours.
CLOSED
    The closing handshake finished, or the connection failed or was lost.
    The transport closes TCP: a server at once, a client after giving the
    server a moment to close first (§7.1.1).
"""

from __future__ import annotations

import enum

from .errors import InvalidState

__all__ = ["State", "Trigger", "TRANSITIONS", "next_state"]


class State(enum.IntEnum):
    """Where a connection is in its life; see the module docstring for each state."""

    CONNECTING = 0
    REQUEST_RECEIVED = 1
    KEEP_ALIVE = 2
    OPEN = 3
    CLOSING = 4
    CLOSED = 5


class Trigger(enum.Enum):
    """What moves a connection; the value completes "cannot ..." in the ``InvalidState`` message."""

    # From the peer.
    REQUEST = "read a request"  # server: a whole request head arrived
    HANDSHAKE_COMPLETE = "take an upgrade"  # client: the server's 101 checked out
    HANDSHAKE_FAILED = "fail the handshake"  # a head that does not parse, or (client) refuses the upgrade
    RECEIVE_CLOSE = "receive a close frame"
    PROTOCOL_ERROR = "fail on a protocol error"  # the peer broke RFC 6455 / 7692
    EOF = "read the end of the stream"
    # From the application.
    ACCEPT = "accept the request"
    RESPOND_KEEP_ALIVE = "respond and keep the connection alive"
    RESPOND_CLOSE = "respond and close"
    SEND_CLOSE = "close"
    FAIL = "fail the connection"  # ours: a heartbeat timeout, an internal error


S = State
T = Trigger

#: (state, trigger) -> the next state. Pairs that leave the state as it is
#: are the calls that are allowed but have nothing left to do.
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    # The opening handshake.
    (S.CONNECTING, T.REQUEST): S.REQUEST_RECEIVED,
    (S.CONNECTING, T.HANDSHAKE_COMPLETE): S.OPEN,
    (S.CONNECTING, T.HANDSHAKE_FAILED): S.CLOSED,
    (S.CONNECTING, T.EOF): S.CLOSED,
    (S.REQUEST_RECEIVED, T.ACCEPT): S.OPEN,
    (S.REQUEST_RECEIVED, T.RESPOND_KEEP_ALIVE): S.KEEP_ALIVE,
    (S.REQUEST_RECEIVED, T.RESPOND_CLOSE): S.CLOSED,
    (S.REQUEST_RECEIVED, T.EOF): S.CLOSED,
    (S.KEEP_ALIVE, T.REQUEST): S.REQUEST_RECEIVED,
    (S.KEEP_ALIVE, T.HANDSHAKE_FAILED): S.CLOSED,
    (S.KEEP_ALIVE, T.EOF): S.CLOSED,
    # Open: our close waits for the peer's; the peer's close is answered at once (§5.5.1).
    (S.OPEN, T.SEND_CLOSE): S.CLOSING,
    (S.OPEN, T.RECEIVE_CLOSE): S.CLOSED,
    (S.OPEN, T.PROTOCOL_ERROR): S.CLOSED,
    (S.OPEN, T.FAIL): S.CLOSED,
    (S.OPEN, T.EOF): S.CLOSED,
    (S.CLOSING, T.SEND_CLOSE): S.CLOSING,
    (S.CLOSING, T.RECEIVE_CLOSE): S.CLOSED,
    (S.CLOSING, T.PROTOCOL_ERROR): S.CLOSED,
    (S.CLOSING, T.FAIL): S.CLOSED,
    (S.CLOSING, T.EOF): S.CLOSED,
    # Closed: what the application may still call, and the end of the stream.
    (S.CLOSED, T.SEND_CLOSE): S.CLOSED,
    (S.CLOSED, T.FAIL): S.CLOSED,
    (S.CLOSED, T.EOF): S.CLOSED,
}

del S, T


def next_state(state: State, trigger: Trigger) -> State:
    """The state ``trigger`` leads to from ``state``; ``InvalidState`` when the table has no such move."""
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise InvalidState(f"cannot {trigger.value} in state {state.name}") from None
