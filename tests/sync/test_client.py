"""``wsstack.sync.connect``: the opening handshake on the caller's thread, options, TLS, its timeout."""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from sync_helpers import STEP, Message, TLSContexts, echo_server, serving
from waiting import bounded
from wsstack.options import Options
from wsstack.sync import Context, Server, connect


@bounded(30)
def test_echo_with_own_client() -> None:
    options = Options(max_message_size=4 << 20)
    with serving(echo_server(options)) as url, connect(url, options=options) as ws:
        messages: list[Message] = ["hello", "", "é€𝄞", b"", b"\x00\xff" * 10, os.urandom(3 << 20), "x" * 70000]
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=STEP) == message
        ws.send_binary(bytearray(b"array"))
        assert ws.recv(timeout=STEP) == b"array"
    assert ws.close_code == 1000 and not ws.is_open
    assert ws.recv() is None


@bounded(30)
def test_subprotocol_and_headers() -> None:
    server = Server()
    seen: dict[str, Any] = {}

    @server.get("/ws")
    def handler(ctx: Context) -> None:
        seen["offered"] = ctx.offered_subprotocols()
        seen["token"] = ctx.header("X-Token")
        ws = ctx.upgrade_to_websocket(subprotocol="chat.v2")
        ws.send(ws.subprotocol or "")
        ws.recv(timeout=STEP)

    with serving(server) as url, connect(url, subprotocols=["chat.v1", "chat.v2"], headers=[("X-Token", "t")]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.recv(timeout=STEP) == "chat.v2"
    assert seen == {"offered": ["chat.v1", "chat.v2"], "token": "t"}


@bounded(30)
def test_tls_both_ways(tls: TLSContexts) -> None:
    with serving(echo_server(ssl=tls.server), "localhost") as url:
        url = url.replace("ws://", "wss://")
        with connect(url, ssl=tls.client) as ws:
            messages: list[Message] = ["secret", os.urandom(300000)]
            for message in messages:
                ws.send(message)
                assert ws.recv(timeout=STEP) == message
        with ws_connect(url, ssl=tls.client) as client:
            client.send(b"bytes over tls")
            assert client.recv(timeout=STEP) == b"bytes over tls"
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(url)  # the system trust store does not know this CA


@bounded(30)
def test_open_timeout_on_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{port}/", options=Options(open_timeout=0.3))
        assert time.monotonic() - started < 3
