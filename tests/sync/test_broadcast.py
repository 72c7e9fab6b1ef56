"""``wsstack.sync.broadcast``: one encoding for every member, closed and slow ones skipped."""

from __future__ import annotations

import threading
from typing import Any

from sync_helpers import STEP, echo_server, serving
from waiting import bounded, wait_until
from wsstack.options import Options
from wsstack.sync import Context, Server, WebSocket, broadcast, connect


@bounded(30)
def test_broadcast_shares_one_compressed_frame_without_context_takeover() -> None:
    server = Server(Options(enable_compression=True, server_no_context_takeover=True))
    members: list[WebSocket] = []

    @server.get("/ws")
    def room(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        members.append(ws)
        ws.recv(timeout=STEP)

    with serving(server) as url:
        clients = [connect(url, options=Options(enable_compression=True)) for _ in range(3)]
        wait_until(lambda: len(members) == 3)
        extension = members[0].core.extensions[0]
        calls = 0
        original = type(extension).encode

        def counting(self: Any, data: bytes) -> Any:
            nonlocal calls
            calls += 1
            return original(self, data)

        type(extension).encode = counting  # type: ignore[method-assign, assignment]
        try:
            text = '{"event": "tick", "values": [1, 2, 3]}' * 20
            assert broadcast(members, text) == 3
        finally:
            type(extension).encode = original  # type: ignore[method-assign]
        assert calls == 1
        for ws in clients:
            assert ws.extensions == ["permessage-deflate"]
            assert ws.recv(timeout=STEP) == text
            ws.close()


@bounded(30)
def test_broadcast_encodes_once_and_reaches_everyone() -> None:
    server = Server()
    members: set[WebSocket] = set()
    lock = threading.Lock()

    @server.get("/ws")
    def room(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        with lock:
            members.add(ws)
        for message in ws:
            with lock:
                broadcast(members, message)
        with lock:
            members.discard(ws)

    with serving(server) as url:
        clients = [connect(url) for _ in range(3)]
        wait_until(lambda: len(members) == 3)
        clients[0].send("to all")
        for ws in clients:
            assert ws.recv(timeout=STEP) == "to all"
        clients[1].send(b"\x01\x02")
        for ws in clients:
            assert ws.recv(timeout=STEP) == b"\x01\x02"
        # Client-side connections mask their own copy.
        assert broadcast(clients, "from the clients") == 3
        for ws in clients:
            for _ in range(3):
                assert ws.recv(timeout=STEP) == "from the clients"
        for ws in clients:
            ws.close()


@bounded(30)
def test_broadcast_skips_closed_and_slow_connections() -> None:
    server = echo_server()
    with serving(server) as url:
        a, b = connect(url), connect(url)
        wait_until(lambda: len(server.connections) == 2)
        conns = list(server.connections)
        slow = conns[0]
        slow._transport._out_size = slow._write_limit + 1  # as if its peer had stopped reading
        try:
            assert broadcast(conns, "x") == 1
        finally:
            slow._transport._out_size = 0
        b.close()
        wait_until(lambda: sum(ws.is_open for ws in conns) == 1)
        assert broadcast(conns, "y") == 1
        a.close()
