"""The hub over Redis pub/sub: every process receives every topic its connections subscribed to, at most once.

One process holds two Redis connections whatever its number of topics and
WebSockets: one that publishes and one subscribed to every topic with a
local subscriber (SUBSCRIBE when the first joins, UNSUBSCRIBE when the
last leaves). A reader task hands each incoming message to the hub's local
fan-out; a message published here comes back the same way, so every
process sees the order Redis saw.

Redis pub/sub keeps nothing: a message published while a process is
disconnected never reaches that process (at most once). While Redis is
away, ``publish`` raises ``HubUnavailable`` (the hub has written the
message to this process's subscribers), ``subscribe`` still succeeds
locally, and the reader reconnects with ``backoff`` and subscribes again to
every topic still wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from ..session import Message
from ._redis import (
    LOST,
    LOST_OR_LATE,
    LOST_OR_LATE_OR_UNAVAILABLE,
    Pipeline,
    close_client,
    connect_with_retries,
    forget_connections,
    logger,
)
from .base import Deliver, HubUnavailable
from .wire import DEFAULT_BACKOFF, Backoff, decode_envelope, encode_envelope

__all__ = ["RedisPubSubBackend"]


class RedisPubSubBackend:
    """Topics across processes through Redis pub/sub (see the module for the guarantees)."""

    delivers_own = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wsstack:",
        connect_retries: int | None = 0,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout: float = 5.0,
    ) -> None:
        """``connect_retries``: how many times ``start()`` tries again before ``HubUnavailable`` (``None``: forever)."""
        if connect_retries is not None and connect_retries < 0:
            raise ValueError(f"connect_retries must be >= 0 or None, got {connect_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.url = url
        self.prefix = prefix
        self.connect_retries = connect_retries
        self.backoff = backoff
        self.timeout = timeout
        self.name = f"wsstack-hub-pubsub-{os.getpid()}"
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._channels: set[str] = set()
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self._pipeline: Pipeline | None = None

    @property
    def connected(self) -> bool:
        """Whether the subscribed connection is up (the reader is receiving)."""
        return self._pubsub is not None

    async def start(self, deliver: Deliver) -> None:
        """Connect both connections (with ``connect_retries``), then start the reader."""
        self._deliver = deliver
        self._client = await connect_with_retries(self.url, self.name, self.timeout, self.connect_retries, self.backoff)
        self._pipeline = Pipeline(self._client)
        try:
            pubsub = await self._open_pubsub()
        except LOST as exc:
            await close_client(self._client)
            raise HubUnavailable(f"Redis at {self.url}: cannot open the subscriber connection: {exc}") from exc
        self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))

    async def join(self, topic: str) -> None:
        """SUBSCRIBE, and wait for Redis to confirm; while disconnected the topic waits for the reconnection."""
        channel = self.prefix + topic
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            await self._subscribe(pubsub, [channel])
        except LOST_OR_LATE_OR_UNAVAILABLE:
            pass  # the reader sees the connection drop and subscribes again to every channel

    async def leave(self, topic: str) -> None:
        """UNSUBSCRIBE (a disconnected reader simply does not subscribe again)."""
        channel = self.prefix + topic
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.unsubscribe(channel)
            except LOST:
                pass

    async def publish(self, topic: str, message: Message) -> None:
        """PUBLISH; ``HubUnavailable`` when Redis does not answer."""
        assert self._pipeline is not None, "start() first"
        try:
            await self._pipeline.execute("PUBLISH", self.prefix + topic, encode_envelope(message))
        except LOST as exc:
            raise HubUnavailable(f"Redis at {self.url}: cannot publish to {topic!r}: {exc}") from exc

    async def history(self, topic: str, count: int) -> list[Message]:
        """Pub/sub keeps no history; ``RedisStreamsBackend`` does."""
        raise NotImplementedError("Redis pub/sub keeps no history: use RedisStreamsBackend for rooms with history")

    async def close(self) -> None:
        """Stop the reader and close both connections."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._drop_pubsub()
        await close_client(self._client)
        self._client = None

    # ------------------------------------------------------------- internals

    async def _open_pubsub(self) -> PubSub:
        """A connected PubSub subscribed to every wanted channel."""
        assert self._client is not None
        pubsub = self._client.pubsub()
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]
            if self._channels:
                # The reader is not running yet: read the confirmations here.
                await pubsub.subscribe(*self._channels)
                pending = set(self._channels)
                while pending:
                    reply = await asyncio.wait_for(pubsub.get_message(timeout=None), self.timeout)
                    if reply is not None:
                        # A channel confirmed first may already carry messages: they are delivered, not dropped.
                        self._dispatch(reply)
                        if reply["type"] == "subscribe":
                            pending.discard(_text(reply["channel"]))
        except BaseException:
            await _close_pubsub(pubsub)
            raise
        self._pubsub = pubsub
        return pubsub

    async def _subscribe(self, pubsub: PubSub, channels: list[str]) -> None:
        loop = asyncio.get_running_loop()
        waiters = []
        for channel in channels:
            waiter: asyncio.Future[None] = loop.create_future()
            self._confirmations.setdefault(channel, []).append(waiter)
            waiters.append(waiter)
        await pubsub.subscribe(*channels)
        await asyncio.wait_for(asyncio.gather(*waiters), self.timeout)

    async def _read(self, pubsub: PubSub) -> None:
        """Deliver until the connection drops, then reconnect with backoff; forever, until cancelled."""
        while True:
            try:
                while True:
                    reply = await pubsub.get_message(timeout=None)
                    if reply is not None:
                        self._dispatch(reply)
            except LOST as exc:
                logger.warning("Redis pub/sub connection lost (%s): reconnecting", exc)
            await self._drop_pubsub()
            await forget_connections(self._client)
            pubsub = await self._reconnect()

    def _dispatch(self, reply: dict[str, Any]) -> None:
        kind = reply["type"]
        channel = _text(reply["channel"])
        if kind == "message":
            assert self._deliver is not None
            try:
                message = decode_envelope(reply["data"])
            except (ValueError, UnicodeDecodeError):
                logger.warning("ignored a message on %s that no hub published", channel)
                return
            self._deliver(channel[len(self.prefix) :], message)
        elif kind == "subscribe":
            for waiter in self._confirmations.pop(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)

    async def _reconnect(self) -> PubSub:
        attempt = 0
        while True:
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1
            try:
                pubsub = await self._open_pubsub()
            except LOST_OR_LATE as exc:
                logger.debug("Redis pub/sub reconnection failed: %s", exc)
                continue
            logger.warning("Redis pub/sub connection back, %d topics subscribed again", len(self._channels))
            return pubsub

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(HubUnavailable("Redis pub/sub connection lost"))
                    waiter.exception()  # retrieved: join() gives up waiting on its own
        self._confirmations.clear()
        if pubsub is not None:
            await _close_pubsub(pubsub)


async def _close_pubsub(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    except LOST:
        pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
