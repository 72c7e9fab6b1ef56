"""wss:// on asyncio's loop through wsstack.asyncio.tls, against real peers (websockets, raw ssl sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Awaitable
from typing import Any

import pytest
import uvloop
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from sync_helpers import TLSContexts, tls_contexts
from wsstack.asyncio import Server, WebSocket, connect
from wsstack.asyncio import tls as wsstack_tls
from wsstack.asyncio.tls import PIECE_SIZE, TLSTransport
from wsstack.options import Options

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def tls() -> TLSContexts:
    return tls_contexts()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def echo_server(context: ssl.SSLContext, options: Options | None = None, seen: list[WebSocket] | None = None) -> Server:
    server = Server(options)
    server.ssl = context

    @server.get("/ws")
    async def echo(ctx: Any) -> None:
        ws = await ctx.upgrade_to_websocket()
        if seen is not None:
            seen.append(ws)
        async for message in ws:
            if message == "bye":
                await ws.close()
                return
            await ws.send(message)

    return server


async def listening(server: Server) -> str:
    await server.listen(0, "127.0.0.1")
    return f"wss://localhost:{server.port}/ws"


# ------------------------------------------------------------------ raw TLS peers (blocking, run in a thread)

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def masked(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + body


def raw_client(port: int, context: ssl.SSLContext, rcvbuf: int | None = None) -> ssl.SSLSocket:
    """A WebSocket client by hand on an ssl socket that reports a missing close_notify (SSLEOFError)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    tls_sock = context.wrap_socket(sock, server_hostname="localhost", suppress_ragged_eofs=False)
    tls_sock.sendall(HANDSHAKE)
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls_sock.recv(1)
    assert data.startswith(b"HTTP/1.1 101"), data
    return tls_sock


def read_frame(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            assert chunk, "EOF inside a frame"
            out += chunk
        return out

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", exactly(8))
    return first & 0x0F, exactly(length)


# ------------------------------------------------------------------ interop


def test_websockets_client_echoes_through_our_tls(tls: TLSContexts) -> None:
    async def main() -> None:
        seen: list[WebSocket] = []
        server = echo_server(tls.server, seen=seen)
        url = await listening(server)
        async with ws_connect(url, ssl=tls.client, max_size=None) as client:
            # Server frames of one piece exactly (a 10-byte header), of one byte more, and of many pieces.
            at_piece = (os.urandom(PIECE_SIZE - 10), os.urandom(PIECE_SIZE - 9))
            for message in ("text", b"binary", *at_piece, "x" * MIB, os.urandom(MIB)):
                await client.send(message)
                assert await client.recv() == message
        assert isinstance(seen[0]._transport, TLSTransport)
        await server.close()

    run(main())


def test_our_client_echoes_against_websockets_server(tls: TLSContexts) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with ws_serve(echo, "127.0.0.1", 0, ssl=tls.server, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"wss://localhost:{port}/", ssl=tls.client) as ws:
                for message in ("text", b"binary", "y" * MIB, os.urandom(MIB)):
                    await ws.send(message)
                    assert await ws.recv() == message
                transport = ws._transport
                assert isinstance(transport, TLSTransport)
                assert isinstance(transport.get_extra_info("ssl_object"), ssl.SSLObject)
                assert transport.get_extra_info("sslcontext") is tls.client
                assert transport.get_extra_info("peercert")["subjectAltName"][0] == ("DNS", "localhost")
                assert transport.get_extra_info("cipher")[1].startswith("TLSv1")
                assert transport.get_extra_info("peername") == ("127.0.0.1", port)
                assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
                assert isinstance(transport.get_extra_info("socket"), asyncio.trsock.TransportSocket)
                assert transport.get_write_buffer_size() == 0
                assert not transport.is_closing()

    run(main())


def test_the_transport_answers_as_asyncios_transports_do(tls: TLSContexts) -> None:
    """The calls a protocol may make besides write(): writelines, buffer limits, EOF, extra info."""

    async def main() -> None:
        server = echo_server(tls.server)
        url = await listening(server)
        async with connect(url, ssl=tls.client) as ws:
            transport = ws._transport
            assert isinstance(transport, TLSTransport)
            frame = masked(0x1, b"in two pieces")
            transport.writelines([frame[:3], frame[3:]])  # one frame, written as two buffers
            assert await ws.recv() == "in two pieces"
            transport.set_write_buffer_limits(high=1 << 20)
            assert transport.get_write_buffer_limits() == (1 << 18, 1 << 20)  # low defaults to a quarter, as asyncio's
            assert not transport.can_write_eof()  # TLS has close_notify, not a half close
            assert transport.get_extra_info("compression") is None
            assert transport.get_extra_info("no such thing", "default") == "default"
            assert transport.is_reading()
        await server.close()

    run(main())


def test_sni_reaches_the_servers_callback(tls: TLSContexts) -> None:
    names: list[str | None] = []
    fresh = tls_contexts()  # its own server context, for the callback
    context = fresh.server
    context.sni_callback = lambda sslobj, name, ctx: names.append(name)  # type: ignore[func-returns-value]

    async def main() -> None:
        server = echo_server(context)
        url = await listening(server)
        async with connect(url, ssl=fresh.client) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        await server.close()

    run(main())
    assert names == ["localhost"]


def test_alpn_is_negotiated_both_ways(tls: TLSContexts) -> None:
    fresh = tls_contexts()  # contexts of its own, for the ALPN settings
    context, client_context = fresh.server, fresh.client
    context.set_alpn_protocols(["x-other", "x-test"])
    client_context.set_alpn_protocols(["x-test"])

    async def main() -> None:
        seen: list[WebSocket] = []
        server = echo_server(context, seen=seen)
        url = await listening(server)
        async with connect(url, ssl=client_context) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            assert ws._transport.get_extra_info("ssl_object").selected_alpn_protocol() == "x-test"
            assert seen[0]._transport.get_extra_info("ssl_object").selected_alpn_protocol() == "x-test"
        await server.close()

    run(main())


def test_a_certificate_the_client_does_not_trust_is_refused(tls: TLSContexts) -> None:
    async def echo(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> None:
        server = echo_server(tls.server)
        url = await listening(server)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await connect(url)  # the system's trust store does not know the test authority
        async with connect(url, ssl=tls.client) as ws:  # the server took no harm
            await ws.send("still")
            assert await ws.recv() == "still"
        await server.close()
        async with ws_serve(echo, "127.0.0.1", 0, ssl=tls.server) as peer:
            port = peer.sockets[0].getsockname()[1]
            with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
                await connect(f"wss://localhost:{port}/")

    run(main())


# ------------------------------------------------------------------ closing


def test_our_close_sends_close_notify(tls: TLSContexts) -> None:
    async def main() -> None:
        server = echo_server(tls.server)
        await listening(server)

        def peer() -> bytes:
            sock = raw_client(server.port, tls.client)
            sock.sendall(masked(0x1, b"bye"))
            opcode, payload = read_frame(sock)
            assert (opcode, payload[:2]) == (0x8, b"\x03\xe8")
            sock.sendall(masked(0x8, payload[:2]))
            # suppress_ragged_eofs=False: a TCP close without close_notify would raise SSLEOFError.
            end = sock.recv(10)
            sock.close()
            return end

        assert await asyncio.to_thread(peer) == b""
        await server.close()

    run(main())


def test_peers_close_is_clean_for_our_client(tls: TLSContexts) -> None:
    async def closer(ws: ServerConnection) -> None:
        await ws.send("closing")
        await ws.close()

    async def main() -> None:
        async with ws_serve(closer, "127.0.0.1", 0, ssl=tls.server) as peer:
            port = peer.sockets[0].getsockname()[1]
            ws = await connect(f"wss://localhost:{port}/", ssl=tls.client)
            assert await ws.recv() == "closing"
            assert await ws.recv() is None
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.core.close_code == 1000
            assert ws._transport.is_closing()

    run(main())


def test_close_notify_alone_is_end_of_stream(tls: TLSContexts) -> None:
    """A peer that ends TLS without a close frame: we see the end at once (1006), not a hang."""

    async def main() -> None:
        server = echo_server(tls.server)
        await listening(server)

        def peer() -> None:
            sock = raw_client(server.port, tls.client)
            sock.sendall(masked(0x1, b"one"))
            assert read_frame(sock) == (0x1, b"one")
            sock.unwrap()  # close_notify, then wait for the server's
            sock.close()

        started = time.monotonic()
        await asyncio.to_thread(peer)
        assert time.monotonic() - started < 5
        await server.close()

    run(main())


def test_abort_drops_the_connection_at_once(tls: TLSContexts) -> None:
    async def main() -> None:
        ended: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

        async def waiting(ws: ServerConnection) -> None:
            await ws.wait_closed()
            ended.set_result(ws.close_code)

        async with ws_serve(waiting, "127.0.0.1", 0, ssl=tls.server) as peer:
            port = peer.sockets[0].getsockname()[1]
            ws = await connect(f"wss://localhost:{port}/", ssl=tls.client)
            ws.abort()
            assert ws._transport.is_closing()
            assert await asyncio.wait_for(ended, 5) == 1006  # no close frame, no close_notify
            await asyncio.wait_for(ws.wait_closed(), 5)

    run(main())


# ------------------------------------------------------------------ handshake failures


def test_a_silent_client_is_closed_after_open_timeout(tls: TLSContexts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "wsstack")

    async def main() -> float:
        server = echo_server(tls.server, Options(open_timeout=0.5))
        await listening(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
        writer.close()
        await server.close()
        return elapsed

    elapsed = run(main())
    assert 0.4 < elapsed < 2, elapsed
    assert any("TLS handshake failed" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_our_client_times_out_on_a_silent_server() -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="TLS"):
                await connect(f"wss://localhost:{port}/", options=Options(open_timeout=0.5))
            assert time.monotonic() - started < 2
        finally:
            listener.close()

    run(main())


def _quiet_failure(tls: TLSContexts, caplog: pytest.LogCaptureFixture, misbehave: Any) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: reported.append(context))
        server = echo_server(tls.server)
        url = await listening(server)
        await asyncio.to_thread(misbehave, server.port)
        for _ in range(100):
            if any("TLS handshake failed" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
        async with connect(url, ssl=tls.client) as ws:
            await ws.send("after")
            assert await ws.recv() == "after"
        await server.close()
        assert reported == []

    run(main())
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("TLS handshake failed" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_a_reset_in_mid_handshake_is_quiet(tls: TLSContexts, caplog: pytest.LogCaptureFixture) -> None:
    def reset(port: int) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = tls.client.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            sslobj.do_handshake()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(outgoing.read())  # the ClientHello
        sock.recv(1)  # the server has answered: it is in mid-handshake
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST

    _quiet_failure(tls, caplog, reset)


def test_plain_http_on_the_tls_port_is_quiet(tls: TLSContexts, caplog: pytest.LogCaptureFixture) -> None:
    def plain(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            sock.sendall(HANDSHAKE)
            while sock.recv(4096):
                pass  # a TLS alert perhaps, then the close

    _quiet_failure(tls, caplog, plain)


class DribblingClient:
    """TLS by hand (SSLObject over a blocking socket), so the test decides where the TCP reads split."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self.incoming.write(self.sock.recv(65536))
        self.sock.sendall(self.outgoing.read())

    def send_in_pieces(self, data: bytes) -> None:
        """The ciphertext of ``data`` in pieces of 1 to 7 bytes at first, a pause after each: headers split too."""
        self.tls.write(data)
        cipher = self.outgoing.read()
        pos = 0
        for size in [1, 2, 3, 5, 7] * 6:
            self.sock.sendall(cipher[pos : pos + size])
            pos += size
            time.sleep(0.003)
        self.sock.sendall(cipher[pos:])

    def recv_until(self, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            try:
                data += self.tls.read(65536)
            except ssl.SSLWantReadError:
                chunk = self.sock.recv(65536)
                assert chunk, "EOF"
                self.incoming.write(chunk)
        return data


def test_records_split_across_reads_are_put_together(tls: TLSContexts) -> None:
    async def main() -> None:
        server = echo_server(tls.server)
        await listening(server)

        def peer() -> tuple[bytes, bytes]:
            client = DribblingClient(server.port, tls.client)
            client.send_in_pieces(HANDSHAKE)
            response = client.recv_until(b"\r\n\r\n")
            # Two messages in one write: one TLS record, split into dribbles.
            client.send_in_pieces(masked(0x1, b"first") + masked(0x1, b"second"))
            echoed = client.recv_until(b"second")
            client.sock.close()
            return response, echoed

        response, echoed = await asyncio.to_thread(peer)
        assert response.startswith(b"HTTP/1.1 101")
        assert echoed == b"\x81\x05first\x81\x06second"
        await server.close()

    run(main())


def test_pipelined_requests_wait_while_reading_is_paused(tls: TLSContexts) -> None:
    """The server reads one request at a time: decrypted bytes wait with reading paused, in order."""

    async def main() -> None:
        server = Server()
        server.ssl = tls.server

        @server.get("/slow")
        async def slow(ctx: Any) -> None:
            await asyncio.sleep(0.2)
            ctx.response.body = "slow"

        @server.get("/fast")
        async def fast(ctx: Any) -> None:
            ctx.response.body = "fast"

        await listening(server)

        def peer() -> bytes:
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            with tls.client.wrap_socket(raw, server_hostname="localhost") as sock:
                request = b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n"
                sock.sendall(request % b"/slow" + request % b"/fast")  # one TLS record
                data = b""
                while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"fast"):
                    chunk = sock.recv(65536)
                    assert chunk, data
                    data += chunk
                return data

        data = await asyncio.to_thread(peer)
        assert data.index(b"slow") < data.index(b"fast")
        await server.close()

    run(main())


def test_a_tcp_close_without_close_notify_ends_the_connection(
    tls: TLSContexts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        seen: list[WebSocket] = []
        server = echo_server(tls.server, seen=seen)
        await listening(server)

        def peer() -> None:
            sock = raw_client(server.port, tls.client)
            sock.sendall(masked(0x1, b"one"))
            assert read_frame(sock) == (0x1, b"one")
            sock.shutdown(socket.SHUT_RDWR)  # TCP's end, with no close_notify (unwrap() would send one)
            sock.close()

        await asyncio.to_thread(peer)
        await asyncio.wait_for(seen[0].wait_closed(), 5)
        assert seen[0].core.close_code == 1006
        await server.close()

    run(main())
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# ------------------------------------------------------------------ flow control


def test_a_peer_that_does_not_read_pauses_our_writer_until_it_drains(tls: TLSContexts) -> None:
    count = 24
    payload = os.urandom(MIB)

    async def main() -> None:
        sent: list[int] = []
        flooding: list[WebSocket] = []
        server = Server()
        server.ssl = tls.server

        @server.get("/ws")
        async def flood(ctx: Any) -> None:
            ws = await ctx.upgrade_to_websocket()
            flooding.append(ws)
            for i in range(count):
                await ws.send(payload)
                sent.append(i)
            await ws.close()

        await listening(server)
        sock = await asyncio.to_thread(raw_client, server.port, tls.client, 65536)
        # Not reading: the kernel's buffers fill, then the transport's, and send() waits.
        previous = -1
        while len(sent) != previous:
            previous = len(sent)
            await asyncio.sleep(0.3)
        assert len(sent) < count, "the writer never paused"
        transport = flooding[0]._transport
        assert transport.get_write_buffer_size() > Options().write_limit  # what stopped it

        def drain() -> int:
            total = 0
            while True:
                opcode, data = read_frame(sock)
                if opcode == 0x8:
                    return total
                assert data == payload
                total += 1

        assert await asyncio.to_thread(drain) == count
        sock.close()
        assert len(sent) == count
        await server.close()

    run(main())


# ------------------------------------------------------------------ uvloop keeps its own TLS


def test_uvloop_uses_its_own_tls(tls: TLSContexts) -> None:
    async def main() -> None:
        seen: list[WebSocket] = []
        server = echo_server(tls.server, seen=seen)
        url = await listening(server)
        async with connect(url, ssl=tls.client) as ws:
            await ws.send("uv")
            assert await ws.recv() == "uv"
            assert not isinstance(ws._transport, TLSTransport)
            assert not isinstance(seen[0]._transport, TLSTransport)
        await server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(main(), 30))


# ------------------------------------------------------------------ the transport's edges (found in review)


class Recorder(asyncio.Protocol):
    """An inner protocol that keeps what it is told."""

    def __init__(self, pause_each_read: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[Exception | None] = self.loop.create_future()
        self.ended: asyncio.Future[bool] = self.loop.create_future()  # whether reading was paused then
        self.received = bytearray()
        self.paused = False
        self.read_while_paused = 0
        self.pause_each_read = pause_each_read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.read_while_paused += self.paused
        self.received += data
        if self.pause_each_read:
            self.paused = True
            self.transport.pause_reading()
            self.loop.call_later(0.005, self.resume)

    def resume(self) -> None:
        self.paused = False
        self.transport.resume_reading()

    def eof_received(self) -> None:
        self.ended.set_result(self.paused)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def test_a_tls12_renegotiation_by_the_server_loses_nothing_we_write(tmp_path: Any) -> None:
    """openssl s_server renegotiates while we write: OpenSSL refuses writes until it is done; they wait, in order."""
    import trustme

    authority = trustme.CA()
    key_and_cert = tmp_path / "server.pem"
    authority.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(key_and_cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    authority.configure_trust(context)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 has no renegotiation
    received = tmp_path / "s_server.out"  # a file, not a pipe: a full pipe would stop s_server reading
    with received.open("wb") as out:
        server = subprocess.Popen(
            ["openssl", "s_server", "-tls1_2", "-accept", "127.0.0.1:0", "-cert", key_and_cert, "-key", key_and_cert],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    assert server.stdin is not None
    try:
        deadline = time.monotonic() + 10
        while not (accepting := [x for x in received.read_bytes().splitlines() if x.startswith(b"ACCEPT")]):
            assert time.monotonic() < deadline and server.poll() is None, "openssl s_server did not start"
            time.sleep(0.02)
        port = int(accepting[0].rsplit(b":", 1)[1])
        chunk, count = b"0123456789" * 10, 3000

        async def main() -> None:
            loop = asyncio.get_running_loop()
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            inner = Recorder()
            transport = await wsstack_tls.connect(loop, sock, context, "localhost", lambda: inner)
            for index in range(count):
                transport.write(chunk)
                if index == count // 4:
                    server.stdin.write(b"r\n")  # s_server: renegotiate now
                    server.stdin.flush()
                await asyncio.sleep(0)  # the renegotiation's messages come in while we write
            await asyncio.sleep(0.2)
            assert not inner.lost.done(), inner.lost.result()
            transport.close()
            await asyncio.wait_for(inner.lost, 5)

        run(main())
        server.stdin.close()
        server.kill()
        server.wait()
        assert b"SSL_do_handshake -> 1" in received.read_bytes()  # the renegotiation did happen
        assert received.read_bytes().count(chunk) == count  # s_server prints what it received: all, once each
    finally:
        server.kill()
        server.wait()


def test_the_end_of_stream_waits_while_the_inner_protocol_paused_reading(tls: TLSContexts) -> None:
    """3 MiB, close_notify and FIN at once, to a protocol that pauses on every read: all in order, then the end."""
    payload = os.urandom(3 * MIB)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))

        def client() -> None:
            with socket.create_connection(listener.getsockname()) as raw:
                sock = tls.client.wrap_socket(raw, server_hostname="localhost")
                sock.sendall(payload)
                plain = sock.unwrap()
                plain.shutdown(socket.SHUT_WR)
                plain.settimeout(10)
                plain.recv(1)

        sender = loop.run_in_executor(None, client)
        conn, _ = listener.accept()
        listener.close()
        conn.setblocking(False)
        inner = Recorder(pause_each_read=True)
        await wsstack_tls.accept(loop, conn, tls.server, lambda: inner, 5)
        assert await asyncio.wait_for(inner.ended, 20) is False  # not while paused
        assert inner.read_while_paused == 0
        assert bytes(inner.received) == payload
        inner.transport.close()
        await asyncio.wait_for(sender, 10)

    run(main())


def test_a_tls_error_after_the_handshake_reaches_connection_lost(tls: TLSContexts) -> None:
    """A corrupted record: the inner protocol learns why the connection ended, not a clean loss."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))

        def client() -> None:
            with socket.create_connection(listener.getsockname()) as raw:
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls_object = tls.client.wrap_bio(incoming, outgoing, server_hostname="localhost")
                raw.settimeout(10)
                while True:
                    try:
                        tls_object.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        raw.sendall(outgoing.read())
                        incoming.write(raw.recv(65536))
                raw.sendall(outgoing.read())
                tls_object.write(b"a record that will not decrypt")
                record = bytearray(outgoing.read())
                record[-1] ^= 0xFF  # its authentication tag no longer matches
                raw.sendall(record)
                with contextlib.suppress(OSError):
                    raw.recv(65536)

        sender = loop.run_in_executor(None, client)
        conn, _ = listener.accept()
        listener.close()
        conn.setblocking(False)
        inner = Recorder()
        await wsstack_tls.accept(loop, conn, tls.server, lambda: inner, 5)
        assert isinstance(await asyncio.wait_for(inner.lost, 10), ssl.SSLError)
        assert inner.received == b""
        await asyncio.wait_for(sender, 10)

    run(main())


@pytest.mark.parametrize("when", ["before the handshake starts", "with the handshake's last message in"])
def test_a_handshake_cancelled_leaves_nothing_for_the_loop_to_report(tls: TLSContexts, when: str) -> None:
    """A server shutting down cancels handshakes: no InvalidStateError, no never-retrieved exception."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: reported.append(context))
        listener = socket.create_server(("127.0.0.1", 0))
        finished_ready, go, finished_sent = threading.Event(), threading.Event(), threading.Event()

        def client() -> None:
            with socket.create_connection(listener.getsockname()) as raw:
                raw.settimeout(10)
                if when == "before the handshake starts":
                    with contextlib.suppress(OSError):
                        raw.recv(1)
                    return
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls_object = tls.client.wrap_bio(incoming, outgoing, server_hostname="localhost")
                while True:
                    try:
                        tls_object.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        raw.sendall(outgoing.read())
                        incoming.write(raw.recv(65536))
                finished_ready.set()
                go.wait(5)
                raw.sendall(outgoing.read())  # the client's Finished
                finished_sent.set()
                with contextlib.suppress(OSError):
                    raw.recv(65536)

        sender = loop.run_in_executor(None, client)
        conn, _ = listener.accept()
        listener.close()
        conn.setblocking(False)
        task = loop.create_task(wsstack_tls.accept(loop, conn, tls.server, Recorder, 5))
        if when == "before the handshake starts":
            loop.call_soon(lambda: loop.call_soon(task.cancel))  # after connection_made, before the task resumes
        else:

            def cancel_with_finished_unread() -> None:
                # The loop waits here while the Finished arrives: the next iteration runs the
                # cancellation first, then the read that completes the handshake.
                go.set()
                finished_sent.wait(5)
                time.sleep(0.05)
                loop.call_soon(task.cancel)

            while not finished_ready.is_set():
                await asyncio.sleep(0.005)
            loop.call_soon(cancel_with_finished_unread)
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(sender, 10)
        await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0)
        assert [context.get("message") for context in reported] == []

    run(main())
