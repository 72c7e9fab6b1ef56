"""What a client decides before and between connections, shared by ``wsstack.asyncio`` and ``wsstack.sync``.

The rule of this package is the core's: no sockets, clocks, threads or event
loops. Each transport's ``connect`` asks it which proxy to use and how to
open the tunnel, whether an answer is a redirect to follow, how long to wait
before reconnecting and whether to retry at all, and what to say when a step
times out; then it does the I/O itself. So the two transports make the same
decisions, and a change to a decision is made once.
"""

from .proxies import (
    FROM_ENVIRONMENT,
    HTTPTunnel,
    Proxy,
    ProxySetting,
    bypasses_proxy,
    is_loopback,
    parse_proxy_url,
    proxy_for,
    socks_refusal,
)
from .redirects import REDIRECT_STATUSES, redirect_target
from .retries import Backoff, Reconnection, should_retry
from .timeouts import Phase, timeout_message

__all__ = [
    "FROM_ENVIRONMENT",
    "ProxySetting",
    "Proxy",
    "parse_proxy_url",
    "proxy_for",
    "bypasses_proxy",
    "is_loopback",
    "HTTPTunnel",
    "socks_refusal",
    "REDIRECT_STATUSES",
    "redirect_target",
    "Backoff",
    "Reconnection",
    "should_retry",
    "Phase",
    "timeout_message",
]
