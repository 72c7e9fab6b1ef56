"""The hub over Redis Streams: rooms with history, and no loss across a dropped connection.

Each topic is a stream (the prefix and the topic's name), trimmed to about
``maxlen`` entries (``XADD MAXLEN ~``: Redis trims whole nodes, so a
stream may hold somewhat more). A reader task per process waits in one
``XREAD BLOCK`` on every topic with a local subscriber, from the last
entry it delivered of each; a process whose connection dropped reconnects
with ``backoff`` and reads on from those entries, so its subscribers get
every entry published meanwhile, once and in order (unless more than
``maxlen`` came in between: the trimmed ones are gone). ``history(topic,
n)`` is ``XREVRANGE``. A topic joined while another XREAD is blocked is
read at once: the join unblocks the reader (``CLIENT UNBLOCK``).

Two connections per process: the reader's, and one for XADD, XREVRANGE
and CLIENT UNBLOCK. While Redis is away, ``publish`` raises
``HubUnavailable`` (the hub has written the message to this process's
subscribers; no stream holds it), and ``subscribe`` succeeds locally: the
topic is read from its end of stream once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from redis.asyncio import Redis

from ..session import Message
from ._redis import (
    LOST,
    LOST_OR_UNAVAILABLE,
    Pipeline,
    close_client,
    connect_with_retries,
    forget_connections,
    logger,
)
from .base import Deliver, HubUnavailable
from .wire import DEFAULT_BACKOFF, Backoff, decode_envelope, encode_envelope

__all__ = ["RedisStreamsBackend"]

_FIELD = b"m"  # the one field of an entry: the envelope


class RedisStreamsBackend:
    """Topics across processes through Redis Streams, with history and replay (see the module)."""

    delivers_own = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wsstack:",
        maxlen: int = 10_000,
        connect_retries: int | None = 0,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout: float = 5.0,
        block: float = 1.0,
    ) -> None:
        """``connect_retries``: as ``RedisPubSubBackend``'s; ``block``: the longest single XREAD wait, in seconds."""
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        if connect_retries is not None and connect_retries < 0:
            raise ValueError(f"connect_retries must be >= 0 or None, got {connect_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if block <= 0:
            raise ValueError(f"block must be > 0, got {block}")
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.connect_retries = connect_retries
        self.backoff = backoff
        self.timeout = timeout
        self.block = block
        self.name = f"wsstack-hub-streams-{os.getpid()}"
        self.reader_name = f"wsstack-hub-reader-{os.getpid()}"
        self._client: Redis | None = None
        self._reader_client: Redis | None = None
        self._reader_id: int | None = None
        # Stream key -> the ID of the last entry delivered (None: from the end, read when next connected).
        self._last: dict[str, bytes | None] = {}
        self._changed = asyncio.Event()
        self._blocked = False
        self._reader: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self._pipeline: Pipeline | None = None

    @property
    def connected(self) -> bool:
        """Whether the reader's connection is up."""
        return self._reader_client is not None

    async def start(self, deliver: Deliver) -> None:
        """Connect both connections (with ``connect_retries``), then start the reader."""
        self._deliver = deliver
        self._client = await connect_with_retries(self.url, self.name, self.timeout, self.connect_retries, self.backoff)
        self._pipeline = Pipeline(self._client)
        try:
            await self._open_reader()
        except LOST as exc:
            await close_client(self._client)
            raise HubUnavailable(f"Redis at {self.url}: cannot open the reader connection: {exc}") from exc
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def join(self, topic: str) -> None:
        """Read ``topic`` from its current last entry on; returns once that entry is known (or Redis is away)."""
        key = self.prefix + topic
        last: bytes | None = None
        try:
            last = await self._tail(key)
        except LOST:
            pass  # resolved by the reader once it is connected again
        self._last[key] = last
        await self._wake()

    async def leave(self, topic: str) -> None:
        """Stop reading ``topic``."""
        key = self.prefix + topic
        if key in self._last:
            del self._last[key]
            await self._wake()

    async def publish(self, topic: str, message: Message) -> None:
        """XADD with MAXLEN ~; ``HubUnavailable`` when Redis does not answer."""
        assert self._pipeline is not None, "start() first"
        try:
            await self._pipeline.execute(
                "XADD", self.prefix + topic, "MAXLEN", "~", self.maxlen, "*", _FIELD, encode_envelope(message)
            )
        except LOST as exc:
            raise HubUnavailable(f"Redis at {self.url}: cannot publish to {topic!r}: {exc}") from exc

    async def history(self, topic: str, count: int) -> list[Message]:
        """The last ``count`` entries of ``topic``'s stream, oldest first; ``HubUnavailable`` when Redis is away."""
        assert self._client is not None, "start() first"
        if count == 0:
            return []
        try:
            entries: Any = await self._client.xrevrange(self.prefix + topic, count=count)
        except LOST as exc:
            raise HubUnavailable(f"Redis at {self.url}: cannot read the history of {topic!r}: {exc}") from exc
        return [message for _, fields in reversed(entries) if (message := _message(fields)) is not None]

    async def close(self) -> None:
        """Stop the reader and close both connections."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        reader, self._reader_client = self._reader_client, None
        await close_client(reader)
        await close_client(self._client)
        self._client = None

    # ------------------------------------------------------------- internals

    async def _tail(self, key: str) -> bytes:
        """The ID of the stream's last entry, ``0-0`` for an empty or missing stream."""
        assert self._client is not None
        entries: Any = await self._client.xrevrange(key, count=1)
        return bytes(entries[0][0]) if entries else b"0-0"

    async def _open_reader(self) -> None:
        # The socket waits at most BLOCK for XREAD's answer, then the usual timeout on top.
        client = await connect_with_retries(
            self.url, self.reader_name, self.timeout + self.block, 0, self.backoff, single=True
        )
        try:
            self._reader_id = int(await client.client_id())
        except LOST:
            await close_client(client)
            raise
        self._reader_client = client

    async def _wake(self) -> None:
        """Have the reader look at the topics again now rather than after its current BLOCK."""
        self._changed.set()
        if self._blocked and self._client is not None and self._reader_id is not None:
            try:
                await self._client.client_unblock(self._reader_id)
            except LOST:
                pass

    async def _read(self) -> None:
        """XREAD every wanted stream from its last delivered entry; reconnect with backoff; until cancelled."""
        while True:
            try:
                await self._read_connected()
            except LOST_OR_UNAVAILABLE as exc:
                logger.warning("Redis Streams reader connection lost (%s): reconnecting", exc)
            reader, self._reader_client = self._reader_client, None
            await close_client(reader)
            await forget_connections(self._client)
            attempt = 0
            while self._reader_client is None:
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
                try:
                    await self._open_reader()
                except LOST_OR_UNAVAILABLE as exc:
                    logger.debug("Redis Streams reconnection failed: %s", exc)
            logger.warning("Redis Streams reader back, resuming %d topics", len(self._last))

    async def _read_connected(self) -> None:
        client = self._reader_client
        assert client is not None and self._deliver is not None
        block_ms = int(self.block * 1000)
        while True:
            if not self._last:
                self._changed.clear()
                await self._changed.wait()
                continue
            for key, last in list(self._last.items()):
                if last is None:
                    self._last[key] = await self._tail(key)
            streams: dict[Any, Any] = {key: last for key, last in self._last.items() if last is not None}
            self._changed.clear()
            self._blocked = True
            try:
                replies: Any = await client.xread(streams, count=1000, block=block_ms)
            finally:
                self._blocked = False
            for raw_key, entries in replies or ():
                key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                for entry_id, fields in entries:
                    last = self._last.get(key)
                    # Left meanwhile, or joined again from a later entry: nothing to deliver twice.
                    if last is None or _id(entry_id) <= _id(last):
                        continue
                    self._last[key] = entry_id
                    message = _message(fields)
                    if message is not None:
                        self._deliver(key[len(self.prefix) :], message)


def _id(entry_id: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition(b"-")
    return int(milliseconds), int(sequence or 0)


def _message(fields: Any) -> Message | None:
    try:
        return decode_envelope(fields[_FIELD])
    except (KeyError, ValueError, UnicodeDecodeError):
        logger.warning("ignored a stream entry that no hub published")
        return None
