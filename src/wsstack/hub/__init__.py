"""Rooms across processes: a publish/subscribe hub for WebSocket connections.

``Hub`` (asyncio) and ``SyncHub`` (threads) keep this process's topics and
fan out with ``broadcast``; a backend carries messages between processes:

- ``MemoryBackend`` (the default): one process, no dependency;
- ``wsstack.hub.redis_pubsub.RedisPubSubBackend``: Redis pub/sub, at most
  once, one Redis connection per process for every topic;
- ``wsstack.hub.redis_streams.RedisStreamsBackend``: Redis Streams, with
  history and replay after a lost connection.

The Redis backends need ``pip install wsstack[redis]``; only their
modules import redis-py. docs/scaling.md tells what each guarantees.
"""

from .base import Backend, HubUnavailable
from .hub import Hub
from .local import Subscriber
from .memory import MemoryBackend
from .sync import SyncHub
from .wire import Backoff

__all__ = ["Hub", "SyncHub", "Backend", "MemoryBackend", "HubUnavailable", "Backoff", "Subscriber"]
