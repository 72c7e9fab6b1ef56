"""Real peers on 127.0.0.1 for the client features: scripted HTTP servers, an HTTP CONNECT proxy, a SOCKS5 proxy.

Each server accepts on a thread of its own and runs a handler per
connection on another, so the asyncio and the blocking client meet the
same peers. The scripted server answers by hand (raw bytes), which lets a
test pick exactly what a misbehaving or refusing server sends. The CONNECT
proxy really tunnels bytes to the target; the SOCKS5 proxy is pproxy, a
SOCKS server from PyPI, run as a child process.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from wsstack.sync import Context, Server

STEP = 10.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Handler = Callable[[socket.socket, int], None]


class ThreadServer:
    """Listens on 127.0.0.1; runs ``handle(sock, index)`` for each connection (index counts from 0)."""

    def __init__(self, handle: Handler, port: int = 0) -> None:
        self.handle = handle
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="client-peer")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            index, self.accepted = self.accepted, self.accepted + 1
            threading.Thread(target=self._run, args=(sock, index), daemon=True).start()

    def _run(self, sock: socket.socket, index: int) -> None:
        with sock:
            sock.settimeout(STEP)
            try:
                self.handle(sock, index)
            except OSError:
                pass

    def ws_url(self, path: str = "/ws", host: str = "127.0.0.1", scheme: str = "ws") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        # close() alone would neither wake the accepting thread nor stop the port listening (Linux): shutdown does.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._thread.join(STEP)

    def __enter__(self) -> ThreadServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to and including the blank line that ends an HTTP head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def answering(*answers: bytes, then_close: bool = True) -> Handler:
    """A handler that reads the request and sends ``answers[index]`` (the last one for later connections)."""

    def handle(sock: socket.socket, index: int) -> None:
        read_head(sock)
        sock.sendall(answers[min(index, len(answers) - 1)])
        if not then_close:
            time.sleep(STEP)

    return handle


def accept_key(head: bytes) -> bytes:
    key = next(
        line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")
    )
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def upgrading_then_dropping(sock: socket.socket, index: int) -> None:
    """Accept the upgrade, then drop the TCP connection without a close frame (the client sees 1006)."""
    head = read_head(sock)
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(head) + b"\r\n\r\n"
    )


def silent(sock: socket.socket, index: int) -> None:
    """Read and never answer (until the client gives up)."""
    while sock.recv(65536):
        pass


class ConnectProxy(ThreadServer):
    """An HTTP CONNECT proxy that tunnels to the target; Basic auth when credentials are set.

    It resolves names itself, as proxies do, and resolves every ``*.test``
    name (RFC 6761 reserves them) to 127.0.0.1: the clients reach loopback
    names directly, so a test that needs a proxy from the environment uses
    such a name, which only the proxy can reach.

    ``targets`` records each CONNECT request-target, so a test can tell the
    proxy was used (and for which host).
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.targets: list[str] = []
        super().__init__(self._serve)

    @property
    def proxy_url(self) -> str:
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def _serve(self, client: socket.socket, index: int) -> None:
        head = read_head(client).decode("latin-1")
        method, target, _ = head.split("\r\n", 1)[0].split(" ")
        self.targets.append(target)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            fields = {
                line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
                for line in head.split("\r\n")[1:]
                if ":" in line
            }
            if fields.get("proxy-authorization") != expected:
                body = b"proxy credentials required"
                client.sendall(
                    b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                return
        host, _, port = target.rpartition(":")
        host = "127.0.0.1" if host.endswith(".test") else host.strip("[]")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=STEP)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            client.settimeout(None)
            upstream.settimeout(None)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join(STEP)


def redirecting_server(**kwargs: Any) -> Server:
    """A wsstack server: /ws echoes; /redirect?status=S&to=L answers S with Location L (a plain HTTP answer)."""
    server = Server(**kwargs)

    @server.get("/ws")
    def echo(ctx: Context) -> None:
        ws = ctx.upgrade_to_websocket()
        for message in ws:
            ws.send(message)

    @server.get("/redirect")
    def redirect(ctx: Context) -> None:
        params = ctx.request.query_params
        ctx.response.set_status(int(params["status"][0]))
        ctx.response.set_header("Location", params["to"][0])
        ctx.response.body = "moved"

    return server


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


# pproxy installs uvloop when it can, and uvloop's get_event_loop() refuses to make one in pproxy's main:
# hide uvloop from it and give it a loop. --auth 0: ask every connection for the credentials (pproxy's default
# trusts an address that authenticated once, for 30 days).
_PPROXY = """
import asyncio, sys
sys.modules["uvloop"] = None
asyncio.set_event_loop(asyncio.new_event_loop())
from pproxy.server import main
sys.argv = ["pproxy", "-l", sys.argv[1], "--auth", "0"]
main()
"""


@contextmanager
def socks5_proxy(credentials: tuple[str, str] | None = None) -> Iterator[str]:
    """A pproxy SOCKS5 server on a free 127.0.0.1 port; yields its socks5:// URL (with the credentials)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auth = f"#{credentials[0]}:{credentials[1]}" if credentials else ""
    process = subprocess.Popen(
        [sys.executable, "-c", _PPROXY, f"socks5://127.0.0.1:{port}{auth}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + STEP
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=STEP).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pproxy did not start") from None
                time.sleep(0.05)
        user = f"{credentials[0]}:{credentials[1]}@" if credentials else ""
        yield f"socks5://{user}127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(STEP)
