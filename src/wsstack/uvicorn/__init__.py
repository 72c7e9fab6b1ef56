"""wsstack as uvicorn's WebSocket implementation, for any ASGI application::

    uvicorn app:app --ws wsstack.uvicorn:WebSocketProtocol

or ``uvicorn.run(app, ws=WebSocketProtocol)`` from Python. It needs uvicorn
(``pip install wsstack[uvicorn]``); nothing else in wsstack imports it.
See docs/asgi.md for what it supports and how it compares.
"""

from .protocol import WebSocketProtocol

__all__ = ["WebSocketProtocol"]
