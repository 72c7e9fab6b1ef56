"""A bare ASGI echo app: the Autobahn testee under uvicorn, and the app of benchmarks/asgi_echo.py.

    python -m uvicorn asgi_echo:app --app-dir compliance --ws wsstack.uvicorn:WebSocketProtocol

It uses nothing but the ASGI messages, so what a run measures or grades is
the WebSocket implementation under it, reached the way any ASGI application
reaches it; it imports nothing, so it runs under uvicorn's own
implementations too. asgi_protocol.py has the testee's protocol class.
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, then send every message back as it came until the client disconnects."""
    if scope["type"] != "websocket":
        # Plain HTTP (a browser, a health check): say what this is instead of failing.
        await send({"type": "http.response.start", "status": 426, "headers": [(b"upgrade", b"websocket")]})
        await send({"type": "http.response.body", "body": b"This is a WebSocket echo server.\n"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
