"""The asyncio client: ``await connect(url)`` or ``async with connect(url) as ws``."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Generator, Sequence
from typing import Any, cast

from ..connection import ClientConnection
from ..errors import ConnectionClosed
from ..events import HandshakeComplete, HandshakeFailed
from ..handshake import parse_ws_url
from ..options import Options
from .connection import WebSocket

__all__ = ["connect"]


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, core: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.core = core
        self.loop = loop
        self.ws: WebSocket | None = None
        self.opened: asyncio.Future[WebSocket] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; only their methods matter.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.core.data_to_send())

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is not None:
            ws.data_received(data)
            return
        core = self.core
        core.receive_data(data)
        events = core.events()
        for index, event in enumerate(events):
            if isinstance(event, HandshakeComplete):
                assert self.transport is not None
                ws = self.ws = WebSocket(core, self.transport, self.loop)
                ws.opened(events[index + 1 :])
                if not self.opened.done():
                    self.opened.set_result(ws)
                return
            if isinstance(event, HandshakeFailed):
                if not self.opened.done():
                    self.opened.set_exception(event.error)
                assert self.transport is not None
                self.transport.close()
                return

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ws is not None:
            self.ws.connection_lost()
        elif not self.opened.done():
            self.opened.set_exception(ConnectionClosed(1006, "connection lost during the opening handshake"))

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws.pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws.resume_writing()


class connect:
    """Open a client connection to a ``ws://`` or ``wss://`` URL.

    Use as ``ws = await connect(url)`` or ``async with connect(url) as ws:``
    (which closes the connection on exit). ``ssl`` defaults to the system's
    trust store for ``wss://``.
    """

    def __init__(
        self,
        url: str,
        *,
        options: Options | None = None,
        subprotocols: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
        origin: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.options = options if options is not None else Options()
        self.subprotocols = subprotocols
        self.headers = headers
        self.origin = origin
        self.ssl = ssl
        self._ws: WebSocket | None = None

    async def _open(self) -> WebSocket:
        secure, host, port, _ = parse_ws_url(self.url)
        core = ClientConnection(
            self.url, self.options, subprotocols=self.subprotocols, headers=self.headers, origin=self.origin
        )
        # As on the server: replies to messages before a peer's error go out before the close.
        core.hold_failures = True
        context = self.ssl
        if secure and context is None:
            context = ssl_module.create_default_context()
        loop = asyncio.get_running_loop()
        protocol = _ClientProtocol(core, loop)

        async def handshake() -> WebSocket:
            await loop.create_connection(
                lambda: protocol, host, port, ssl=context if secure else None, server_hostname=host if secure else None
            )
            return await protocol.opened

        try:
            return await asyncio.wait_for(handshake(), self.options.open_timeout)
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._open().__await__()

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None:
            await self._ws.close()
