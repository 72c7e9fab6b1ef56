"""One WebSocket connection's policies, written once for every transport.

The core (``Connection``) knows the protocol; a transport knows its
sockets, its clock and its threads. Between them sit the decisions that do
not depend on how I/O is done, and that two transports used to make each in
their own way: how many received messages may wait for the application and
when reading pauses and resumes, which pings a pong answers and after how
long, when the heartbeat pings and when it gives up, when a protocol failure
that was held back is sent, and when the TCP connection goes away.

``WebSocketSession`` makes those decisions and returns them as action flags
(an ``int``: cheaper than an object on the per-read path); a transport maps
each flag to its own I/O in a line or two. It never reads a clock: times
come in as arguments (``now``), from the transport's own clock.

The rules, in every state:

- **The receive queue is bounded.** While the connection is open, reading
  pauses once ``max_queue`` messages wait and resumes when the application
  has taken them down to half that. Once we have sent a close, reading goes
  on (the peer's close frame is behind the messages), and messages beyond
  ``max_queue`` are dropped: nobody is going to read them, and a peer must
  not be able to grow the queue while we wait for its close.
- **A pong acknowledges its ping and every ping sent before it** (RFC 6455
  §5.5.3 lets a peer answer only the latest of several pings).
- **The heartbeat** pings every ``ping_interval`` seconds; a ping still
  unanswered ``ping_timeout`` seconds later fails the connection with 1011.
  That is our failure, not the peer's breaking the protocol. A peer whose
  bytes came in after the ping is alive, whatever its pong's delay: the
  heartbeat gives it another ``ping_timeout`` instead. Under load the pong
  queues behind the data each side has in flight, and a busy server or
  client must not fail the healthy connections it is slow to serve (in a
  soak of the threaded server, hundreds of busy connections ended so). While reading
  is paused because the application is behind (and writing is not) it
  neither pings nor judges: the pong may be waiting in the socket we are not
  reading, and a healthy peer must not be failed for our application's
  slowness; its timeout starts again when the timer finds it so. A peer that
  does not read what we write (writing paused too) is judged as ever.
- **A peer's protocol error is answered after what came before it.** The core
  holds the close frame back; it is released as soon as the application
  has taken every message queued before the error, or ``close_timeout``
  seconds later at the latest.
- **One receiver at a time.** A ``recv()`` (or ``recv_frame()``) that
  would run while another one waits raises ``InvalidState``, in every
  transport (``RuntimeError`` from the uvicorn adapter's ASGI
  ``receive()``): two waiters cannot both be woken by one message, and the
  one left behind would hang. The one that waits gets its message, or ``None``
  once the connection is closed.
- **A server's inline consumer stops reading while its replies back up**
  (the write buffer over its limit), so a peer that sends without reading
  cannot make it buffer without bound. A client's reads on: were both ends
  to stop reading while their own writes wait, a client that pipelines and
  a server that replies would each wait for the other to read. The client
  bounds what it sends itself (``send()`` waits; ``send_nowait()`` is the
  caller's to pace).
- **TCP closes as RFC 6455 §7.1.1 says:** once the core is closed the server
  closes at once; a client whose close handshake completed gives the server
  ``close_timeout`` seconds to close first (``LINGER``), then aborts.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Sequence
from typing import Any

from ..connection import Connection, State
from ..errors import ConnectionClosed, InvalidState
from ..events import BinaryMessage, Event, Pong, ProtocolFailure, TextMessage
from ..frames import Frame, Opcode
from ..writer import payload_of

__all__ = ["WebSocketSession", "Action"]

logger = logging.getLogger("wsstack")


class Action:
    """The decisions a session returns, as bits of an ``int`` (cheaper than an object per read)."""

    #: Messages were queued: wake the application waiting in ``recv()``.
    WAKE = 1
    #: Stop reading the socket.
    PAUSE_READING = 2
    #: Read the socket again.
    RESUME_READING = 4
    #: Pongs answered pings: settle them with ``take_acknowledged()``.
    ACKNOWLEDGED = 8
    #: Close the TCP connection now.
    CLOSE_TCP = 16
    #: A client waits for the server to close TCP: abort after ``close_timeout``.
    LINGER = 32
    #: A protocol failure waits for the application to read what came before
    #: it: call ``release_held_failure()`` after ``close_timeout`` at the latest.
    HOLD = 64
    #: Nothing more can be received (``waiting()`` only).
    ENDED = 128
    #: The heartbeat's ping was answered: re-arm the heartbeat timer at ``heartbeat_due``.
    HEARTBEAT = 256


# The states as module constants: an enum member lookup costs about 45 ns
# in Python 3.11, and some of these checks run on every read.
_OPEN, _CLOSING, _CLOSED = State.OPEN, State.CLOSING, State.CLOSED
_WAKE = Action.WAKE

_ANOTHER_RECV = (
    "another recv() is already waiting on this connection; receive in one task or thread and hand the messages on"
)

#: The waiter the heartbeat puts in the ping table: nobody else settles it.
_HEARTBEAT = object()


class WebSocketSession:
    """The policies of one connection over its sans-IO core (see the module's rules).

    ``queue`` holds what ``recv()`` returns (``str``/``bytes``, or ``Frame``
    in frame mode); it stays the same object for the session's life, and a
    transport pops from it directly and calls ``taken()`` while
    ``reading_paused``. The waiters in the ping table are the
    transport's own objects (futures); the session only stores and returns them.
    """

    __slots__ = (
        "core",
        "queue",
        "max_queue",
        "close_timeout",
        "reading_paused",
        "writing_paused",
        "inline_consumer",
        "receiving",
        "lost",
        "_pings",
        "_acknowledged",
        "_heartbeat_sent",
        "heartbeat_due",
        "_heard",
    )

    def __init__(self, core: Connection) -> None:
        self.core = core
        options = core.options
        self.queue: collections.deque[Any] = collections.deque()
        self.max_queue = max(1, options.max_queue)
        self.close_timeout = options.close_timeout
        self.reading_paused = False
        #: The transport's write buffer is over its limit.
        self.writing_paused = False
        #: Messages are consumed inside the read callback (the asyncio
        #: message handler): reading then also pauses while writing is.
        self.inline_consumer = False
        #: The ``recv()`` waiting for a message, as the token it gave ``start_receiving``; ``None`` when none waits.
        self.receiving: object | None = None
        #: The TCP connection is gone.
        self.lost = False
        #: Pings waiting for their pong, oldest first; made on the first ping
        #: (64 bytes that an idle connection without a heartbeat never needs).
        self._pings: dict[bytes, tuple[object, float]] | None = None
        #: Answered pings not yet taken; made on the first pong (most connections never see one).
        self._acknowledged: list[tuple[object, float]] | None = None
        #: When the heartbeat's unanswered ping went out, or None.
        self._heartbeat_sent: float | None = None
        #: When the heartbeat pings next, once its last ping was answered
        #: (set by ``take_acknowledged``; ``HEARTBEAT`` says it moved).
        self.heartbeat_due = 0.0
        #: Bytes came in since the heartbeat's ping went out (set on every read: cheaper than a test).
        self._heard = False

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray | memoryview) -> int:
        """Feed bytes read from the socket (``b""`` at EOF); the actions to take."""
        core = self.core
        self._heard = True
        core.receive_data(data)
        # process_events(), inlined: this runs once per read.
        events = core.events()
        actions = self._dispatch(events) if events else 0
        if core.state is _CLOSED:
            actions |= self._closed()
        return actions

    def process_events(self, taken: Sequence[Event] = ()) -> int:
        """Take what the core parsed without a read (frames that came with the handshake).

        ``taken``: events the transport already took from the core, to handle first.
        """
        core = self.core
        events = [*taken, *core.events()]
        actions = self._dispatch(events) if events else 0
        if core.state is _CLOSED:
            actions |= self._closed()
        return actions

    def _dispatch(self, events: list[Any]) -> int:
        queue = self.queue
        actions = 0
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                queue.append(event.data)
            elif kind is Frame:
                queue.append(event)
                if event.opcode == Opcode.PONG and self._pings and event.payload in self._pings:
                    actions |= self._acknowledge(event.payload)
            elif kind is Pong:
                if self._pings and event.data in self._pings:
                    actions |= self._acknowledge(event.data)
            elif kind is ProtocolFailure:
                logger.info("failing connection: %s (%d)", event.error, event.code)
                if self.core.held_failure is not None:
                    if queue:
                        actions |= Action.HOLD
                    else:
                        self.core.release_held_failure()
        if queue:
            actions |= _WAKE
            if len(queue) >= self.max_queue and not self.inline_consumer:
                actions |= self._queue_full()
        return actions

    def _queue_full(self) -> int:
        state = self.core.state
        if state is _OPEN:
            if not self.reading_paused:
                self.reading_paused = True
                return Action.PAUSE_READING
        elif state is _CLOSING:
            queue = self.queue
            while len(queue) > self.max_queue:
                queue.pop()
        return 0

    def taken(self) -> int:
        """The application took messages from ``queue``: ``RESUME_READING`` once it has room again."""
        if self.reading_paused and len(self.queue) <= self.max_queue // 2 and not self._replies_backlogged():
            self.reading_paused = False
            return Action.RESUME_READING
        return 0

    def hold_reading(self) -> int:
        """The transport stops reading before the queue is full, for a reason of its own.

        ``taken()`` resumes as usual. Only while open: once closing, the
        peer's close frame must still be read.
        """
        if self.core.state is _OPEN and not self.reading_paused:
            self.reading_paused = True
            return Action.PAUSE_READING
        return 0

    def drained(self) -> int:
        """An inline consumer took everything queued: a failure held for it is sent now."""
        return self.release_held_failure() if self.core.held_failure is not None and not self.queue else 0

    def start_receiving(self, token: object) -> None:
        """A ``recv()``, named by ``token``, is about to wait: ``InvalidState`` if another one waits already.

        The transport calls ``stop_receiving(token)`` when the call ends,
        however it ends (a message, ``None``, a timeout, a cancellation).
        """
        if self.receiving is not None:
            raise InvalidState(_ANOTHER_RECV)
        self.receiving = token

    def stop_receiving(self, token: object) -> None:
        """The ``recv()`` of ``token`` ended; one that took its place (``receiver_cancelled``) goes on waiting."""
        if self.receiving is token:
            self.receiving = None

    def receiver_cancelled(self) -> None:
        """The waiting ``recv()``'s wait was cancelled: it is leaving, and another may wait now.

        On an event loop ``task.cancel()`` cancels the awaited future at once
        but the task leaves ``recv()`` only when it runs next, so without this
        ``task.cancel(); await ws.recv()`` would find it still waiting.
        """
        self.receiving = None

    def waiting(self) -> int:
        """The application waits for a message and the queue is empty: the actions to take.

        A held failure is released now, since everything before it has been
        read. ``ENDED`` is set when nothing more can come.
        """
        actions = self.release_held_failure() if self.core.held_failure is not None else 0
        if self.lost or self.core.state is _CLOSED:
            actions |= Action.ENDED
        return actions

    def enter_frame_mode(self) -> None:
        """Deliver frames from now on; messages already queued become single frames.

        ``InvalidState`` while a ``recv()`` waits for a message.
        """
        core = self.core
        if core.frame_mode:
            return
        if self.receiving is not None:
            raise InvalidState(_ANOTHER_RECV)  # the waiting recv() would get a frame
        core.frame_mode = True
        queue = self.queue
        for _ in range(len(queue)):
            item = queue.popleft()
            if isinstance(item, str):
                item = Frame(Opcode.TEXT, item.encode())
            elif not isinstance(item, Frame):
                item = Frame(Opcode.BINARY, item)
            queue.append(item)

    def release_held_failure(self) -> int:
        """Send the close frame of a held protocol failure; the actions to take."""
        core = self.core
        if core.held_failure is None:
            return 0
        core.release_held_failure()
        return self._closed() if core.state is _CLOSED else 0

    # -------------------------------------------------------------- writing

    def pause_writing(self) -> int:
        """The transport's write buffer went over its limit."""
        self.writing_paused = True
        self.core.pause_pongs()
        if self._replies_backlogged() and not self.reading_paused:
            # Inline consumers reply without waiting: take no more requests until the replies drain.
            self.reading_paused = True
            return Action.PAUSE_READING
        return 0

    def resume_writing(self) -> int:
        """The write buffer drained below its limit; the latest pending pong goes out."""
        self.writing_paused = False
        self.core.resume_pongs()
        if self.inline_consumer and self.reading_paused and len(self.queue) < self.max_queue:
            self.reading_paused = False
            return Action.RESUME_READING
        return 0

    def set_inline_consumer(self, inline: bool) -> int:
        """Messages are consumed inside the read callback (``True``) or from ``queue`` (``False``)."""
        self.inline_consumer = inline
        if self.reading_paused and not self._replies_backlogged() and len(self.queue) < self.max_queue:
            self.reading_paused = False
            return Action.RESUME_READING
        if self._replies_backlogged() and not self.reading_paused:
            # No pause_writing() will come while the buffer stays over its limit.
            self.reading_paused = True
            return Action.PAUSE_READING
        return 0

    def _replies_backlogged(self) -> bool:
        return self.inline_consumer and self.writing_paused and not self.core.is_client

    # ---------------------------------------------------------------- pings

    def ping(self, data: bytes | str, waiter: object, now: float) -> bytes:
        """Send a ping whose pong settles ``waiter``; returns its payload.

        Without data a random 4-byte payload is used so the pong can be
        matched. ``data`` is ``str`` or bytes-like (``TypeError`` otherwise).
        """
        payload = payload_of(data, "ping()")
        if not payload:
            payload = os.urandom(4)
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        elif payload in pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        self.core.ping(payload)
        pings[payload] = (waiter, now)
        return payload

    def _acknowledge(self, payload: bytes) -> int:
        pings = self._pings
        assert pings is not None  # a pong is only matched against pings sent
        acknowledged = self._acknowledged
        if acknowledged is None:
            acknowledged = self._acknowledged = []
        actions = Action.ACKNOWLEDGED
        while pings:
            key = next(iter(pings))
            waiter, sent = pings.pop(key)
            acknowledged.append((waiter, sent))
            if waiter is _HEARTBEAT:
                actions |= Action.HEARTBEAT
            if key == payload:
                break
        return actions

    def take_acknowledged(self, now: float) -> list[tuple[Any, float]]:
        """The waiters of the pings that pongs answered, each with its round-trip time."""
        settled = []
        for waiter, sent in self._acknowledged or ():
            if waiter is _HEARTBEAT:
                self._heartbeat_sent = None
                self.heartbeat_due = now + (self.core.options.ping_interval or 0)
            else:
                settled.append((waiter, now - sent))
        self._acknowledged = None
        return settled

    # ------------------------------------------------------------ heartbeat

    @property
    def heartbeat_sent(self) -> float | None:
        """When the heartbeat's ping that is still unanswered went out, or ``None``."""
        return self._heartbeat_sent

    def heartbeat_start(self, now: float) -> float | None:
        """When the heartbeat timer fires first, or ``None`` without a heartbeat."""
        interval = self.core.options.ping_interval
        if not interval:
            return None
        self.heartbeat_due = now + interval
        return self.heartbeat_due

    def heartbeat(self, now: float) -> tuple[int, float | None]:
        """The heartbeat timer fired: the actions to take and when it fires next (``None``: never).

        The timer stays armed while the connection is open: at the next
        ping, or at the end of the current ping's ``ping_timeout``.
        """
        core = self.core
        options = core.options
        interval = options.ping_interval
        if self.lost or core.state is not _OPEN or not interval:
            return 0, None
        timeout = options.ping_timeout
        sent = self._heartbeat_sent
        if sent is not None:
            if timeout and now - sent >= timeout:
                if self._heard or self._behind():
                    # The peer is alive (it sent something), or its pong may be unread: wait again.
                    self._heartbeat_sent = now
                    self._heard = False
                    return 0, now + timeout
                logger.info("no pong within ping_timeout: closing with 1011")
                core.fail(1011, "keepalive ping timeout")
                return self._closed(), None
            return 0, sent + timeout if timeout else now + interval
        if now < self.heartbeat_due:
            return 0, self.heartbeat_due
        if self._behind():
            return 0, now + interval  # its pong could not be read
        self.ping(b"", _HEARTBEAT, now)
        self._heartbeat_sent = now
        self._heard = False
        return 0, now + (timeout or interval)

    def _behind(self) -> bool:
        """Reading is paused for the application's sake, not the peer's."""
        return self.reading_paused and not self.writing_paused

    # -------------------------------------------------------------- closing

    def close(self, code: int, reason: str) -> int:
        """The application closes: send a close frame (or a held failure's); the actions to take."""
        core = self.core
        actions = 0
        if core.state is _OPEN:
            core.close(code, reason)
            if self.core.state is _CLOSED:  # a held failure's close frame ends it at once
                actions = self._closed()
        # The peer's close frame may be behind messages nobody will read now.
        return actions | self.read_on()

    def read_on(self) -> int:
        """Reading goes on whatever the queue holds (the peer's close or EOF is behind it)."""
        if self.reading_paused:
            self.reading_paused = False
            return Action.RESUME_READING
        return 0

    def _closed(self) -> int:
        """The core is closed: who closes TCP and when."""
        if self.lost:
            return 0
        core = self.core
        if not core.is_client or not core.close_received:
            return Action.CLOSE_TCP | Action.WAKE
        return Action.LINGER | Action.WAKE

    def connection_lost(self) -> tuple[ConnectionClosed, list[Any]]:
        """TCP is gone: the error for whoever still waits, and the ping waiters to fail with it."""
        core = self.core
        if core.state is not _CLOSED:
            core.receive_data(b"")
            self._dispatch(core.events())
        self.lost = True
        waiters = [waiter for waiter, _ in (self._pings or {}).values() if waiter is not _HEARTBEAT]
        self._pings = None
        return self.closed_error(), waiters

    def closed_error(self) -> ConnectionClosed:
        """What a send raises once the connection is closed."""
        return ConnectionClosed(self.core.close_code or 1006, self.core.close_reason)
