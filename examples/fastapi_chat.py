"""The chat room as a FastAPI app, served by uvicorn on wsstack's WebSocket protocol.

    uvicorn examples.fastapi_chat:app --ws wsstack.uvicorn:WebSocketProtocol

or ``python examples/fastapi_chat.py [--port 8000]``, which runs the same.
Open http://127.0.0.1:8000/ in a browser or two: the page (the one ``python
-m wsstack demo`` serves) joins the room at ``/ws?name=...``. Every member
receives "alice joined", "alice: <message>" and "alice left". Nothing here
is wsstack's but the ``--ws`` option: the app is plain FastAPI, and runs
unchanged on uvicorn's own WebSocket implementations.
"""

from __future__ import annotations

import argparse
import asyncio
from importlib import resources

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

#: Display names are trimmed to this many characters.
MAX_NAME_LENGTH = 32
PAGE = resources.files("wsstack.cli").joinpath("chat.html").read_text(encoding="utf-8")


class ChatRoom:
    """The members by connection; what one says goes to all of them."""

    def __init__(self) -> None:
        self.members: dict[WebSocket, str] = {}

    async def join(self, ws: WebSocket, name: str) -> None:
        self.members[ws] = name
        await self.announce(f"{name} joined")
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:  # a chat is text: binary messages are ignored
                    await self.announce(f"{name}: {message['text']}")
        except WebSocketDisconnect:
            return
        finally:
            del self.members[ws]
            await self.announce(f"{name} left")

    async def announce(self, text: str) -> None:
        """Send to every member at once: one slow member does not hold up the others' lines."""
        members = list(self.members)
        # A member that is leaving fails its send; join() removes it.
        await asyncio.gather(*(member.send_text(text) for member in members), return_exceptions=True)


def clean_name(raw: str) -> str:
    name = " ".join(raw.split())[:MAX_NAME_LENGTH]
    return name or "guest"


app = FastAPI(title="wsstack chat")
room = ChatRoom()


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE


@app.websocket("/ws")
async def chat(ws: WebSocket, name: str = "") -> None:
    await ws.accept()
    await room.join(ws, clean_name(name))


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    print(f"Chat room on http://{args.host}:{args.port}/ (FastAPI, uvicorn, wsstack)")
    uvicorn.run(app, host=args.host, port=args.port, ws="wsstack.uvicorn:WebSocketProtocol")


if __name__ == "__main__":
    main()
