"""wss:// on asyncio's loop through wsstack.asyncio.tls, against real peers (websockets, raw ssl sockets)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
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
from wsstack.asyncio.tls import TLSTransport
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
            for message in ("text", b"binary", "x" * MIB, os.urandom(MIB)):
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
