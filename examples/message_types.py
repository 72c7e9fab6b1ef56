"""Message types: read frame by frame with ``recv_frame()`` and act on each opcode.

``recv_frame()`` hands over every frame as it arrives, control frames
included, instead of whole messages. Automatic pongs are switched off here
so that the ``PING`` case below is what answers a ping, as in the seed.
"""

from __future__ import annotations

import argparse

from wsstack import Opcode, Options
from wsstack.asyncio import Context, Server


def build_server() -> Server:
    """A server that prints what each frame on /ws is and answers pings by hand."""
    srv = Server(Options(auto_pong=False))

    @srv.get("/ws")
    async def frames(ctx: Context) -> None:
        ws = await ctx.upgrade_to_websocket()

        while (frame := await ws.recv_frame()) is not None:
            match frame.opcode:
                case Opcode.TEXT:
                    # A fragment may end inside a UTF-8 sequence: replace, don't raise.
                    print(f"Text: {frame.payload.decode(errors='replace')}")
                case Opcode.BINARY:
                    print(f"Binary: {len(frame.payload)} bytes")
                case Opcode.CONTINUATION:
                    # A fragmented message arrives as TEXT or BINARY, then these.
                    print(f"Continuation: {len(frame.payload)} bytes, final: {frame.fin}")
                case Opcode.PING:
                    await ws.pong(frame.payload)
                case Opcode.PONG:
                    print("Pong received")
                case Opcode.CLOSE:
                    # The library has already answered the close frame.
                    print("Close frame received")
                    return

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"Frame inspector on ws://{args.host}:{args.port}/ws")
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
