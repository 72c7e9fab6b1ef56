"""The steps of opening a client connection, and what a timeout in each one says.

A bare ``TimeoutError()`` leaves the user guessing whether the server was
unreachable, the TLS handshake stalled or the server never answered the
upgrade; the message names the step, the peer and the budget that ran out.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Phase", "timeout_message"]


class Phase(Enum):
    """A step of ``connect()``; the value completes "timed out after N s ..."."""

    TCP_CONNECT = "connecting to {peer}"
    PROXY_CONNECT = "connecting to the proxy {peer}"
    PROXY_TUNNEL = "waiting for the proxy {peer} to open a tunnel"
    TLS_HANDSHAKE = "in the TLS handshake with {peer}"
    OPENING_HANDSHAKE = "waiting for the server's opening handshake answer from {peer}"


def timeout_message(phase: Phase, timeout: float, host: str, port: int) -> str:
    """The message of the ``TimeoutError`` raised when ``open_timeout`` ran out during ``phase``.

    The budget is the whole of ``open_timeout`` (one deadline covers every
    step of one attempt), so the figure is the option the user set.
    """
    peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"timed out after {timeout:g} s (open_timeout) {phase.value.format(peer=peer)}"
