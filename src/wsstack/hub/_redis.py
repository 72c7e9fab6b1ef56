"""What both Redis backends do the same way: open a client, retry with backoff, name the errors.

Every client is made with redis-py's own retries off: a command that
fails is reported at once (as ``HubUnavailable``) rather than retried in
place, where a publish could be sent twice; reconnecting is the backends'
job, with ``Backoff``'s schedule.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import HubUnavailable
from .wire import Backoff

__all__ = [
    "LOST",
    "LOST_OR_UNAVAILABLE",
    "LOST_OR_LATE",
    "LOST_OR_LATE_OR_UNAVAILABLE",
    "open_client",
    "close_client",
    "forget_connections",
    "revalidate",
    "IDLE_CHECK",
    "Pipeline",
    "connect_with_retries",
    "logger",
]

logger = logging.getLogger("wsstack.hub")

#: What redis-py raises when Redis is out of reach or the connection broke. On uvloop a
#: write to a transport the peer closed raises RuntimeError ("the handler is closed"),
#: which redis-py passes on when Redis goes away between its connect and its HELLO.
LOST: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, RuntimeError)
#: The same, or the hub's word for it (a retried connection that gave up).
LOST_OR_UNAVAILABLE: tuple[type[BaseException], ...] = (*LOST, HubUnavailable)
#: The same as LOST, or a wait for a reply that ran out of time.
LOST_OR_LATE: tuple[type[BaseException], ...] = (*LOST, asyncio.TimeoutError)
#: Either, or the hub's own word for it (a confirmation that failed when the connection dropped).
LOST_OR_LATE_OR_UNAVAILABLE: tuple[type[BaseException], ...] = (*LOST_OR_LATE, HubUnavailable)


def open_client(url: str, name: str, timeout: float, single: bool = False) -> Redis:
    """A client for ``url`` that does not retry by itself (see the module)."""
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        client_name=name,
        single_connection_client=single,
    )


async def close_client(client: Redis | None) -> None:
    """Close ``client``'s connections, whatever state they are in."""
    if client is not None:
        try:
            await client.aclose()
        except LOST:
            pass


async def forget_connections(client: Redis | None) -> None:
    """Drop the idle pooled connections of ``client``, so the next command opens a new one.

    Called when a backend sees Redis go away: a pooled connection opened
    before a restart would otherwise fail the first command sent on it
    after Redis is back (its end of stream is not always noticed before).
    """
    if client is not None:
        try:
            await client.connection_pool.disconnect(inuse_connections=False)
        except LOST:
            pass


#: Seconds without a successful command after which a pooled connection is checked before use.
IDLE_CHECK = 1.0


async def revalidate(client: Redis) -> None:
    """PING (again on a new connection if the pooled one is dead); raises ``LOST`` if Redis does not answer.

    A command sent on a pooled connection opened before Redis restarted
    fails, and retrying the command could run it twice; a PING can be
    retried safely, so a backend PINGs before its first command after a
    quiet spell (``IDLE_CHECK``).
    """
    try:
        await client.ping()
    except LOST:
        await forget_connections(client)
        await client.ping()


class Pipeline:
    """Commands from any number of tasks, sent in order on one connection, as few pipelines as can be.

    Every publish of a process goes through one of these: whatever the
    number of WebSockets publishing at once, one connection carries them,
    and the commands that arrive while a pipeline is out go together in
    the next one (one write and one read for all of them). Order is the
    order of ``execute`` calls, so a task's commands reach Redis in the
    order it sent them.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._last_ok = -IDLE_CHECK  # loop time of the last pipeline Redis answered

    async def execute(self, *args: Any) -> Any:
        """Send one command; its reply, or what redis-py raises (``LOST`` when Redis is out of reach)."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, reply))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        return await reply

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                now = loop.time()
                try:
                    if now - self._last_ok > IDLE_CHECK:
                        await revalidate(self._client)
                    pipe = self._client.pipeline(transaction=False)
                    for args, _ in batch:
                        pipe.execute_command(*args)
                    replies = await pipe.execute(raise_on_error=False)
                except LOST as exc:
                    await forget_connections(self._client)
                    for _, reply in batch:
                        if not reply.done():
                            reply.set_exception(RedisConnectionError(str(exc)))
                    continue
                self._last_ok = now
                for (_, reply), result in zip(batch, replies):
                    if not reply.done():
                        if isinstance(result, Exception):
                            reply.set_exception(result)
                        else:
                            reply.set_result(result)
        finally:
            self._sender = None


async def connect_with_retries(
    url: str, name: str, timeout: float, retries: int | None, backoff: Backoff, single: bool = False
) -> Redis:
    """A client that answered PING; ``HubUnavailable`` after ``retries`` failed retries (``None``: forever)."""
    attempt = 0
    while True:
        client = open_client(url, name, timeout, single)
        try:
            await client.ping()
            return client
        except LOST as exc:
            await close_client(client)
            if retries is not None and attempt >= retries:
                raise HubUnavailable(f"Redis at {url} is unreachable after {attempt + 1} attempts: {exc}") from exc
            delay = backoff.delay(attempt)
            logger.warning("Redis at %s is unreachable (%s); next attempt in %.2f s", url, exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
