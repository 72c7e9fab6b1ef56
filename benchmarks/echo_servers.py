"""Echo servers for the end-to-end benchmark, one per library, each in its own process.

    python benchmarks/echo_servers.py {wsstack,wsstack-handler,websockets,picows}[-uvloop] PORT

All run without compression, without heartbeat pings, with the same 16 MiB
message limit; on the default asyncio event loop, or on uvloop with the
``-uvloop`` suffix. ``wsstack`` loops on ``recv()`` and ``send()`` as most
applications do; ``wsstack-handler`` uses the message-handler API.
``picows`` (Cython, frame callbacks, no message reassembly or UTF-8
checks) is the fastest Python peer, there to show where the bar is.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


async def recv_send_echo(ctx):  # type: ignore[no-untyped-def]
    """The echo route of every wsstack asyncio server the benchmarks start: the loop most applications write."""
    ws = await ctx.upgrade_to_websocket()
    while (message := await ws.recv()) is not None:
        await ws.send(message)


def sync_recv_send_echo(ctx: Any) -> None:
    """``recv_send_echo`` for the threaded servers."""
    ws = ctx.upgrade_to_websocket()
    while (message := ws.recv()) is not None:
        ws.send(message)


async def handler_echo(ctx):  # type: ignore[no-untyped-def]
    ws = await ctx.upgrade_to_websocket()
    ws.set_message_handler(ws.send_nowait)
    await ws.wait_closed()


async def run_wsstack(port: int, handler: bool = False) -> None:
    from wsstack.asyncio import Server
    from wsstack.options import Options

    server = Server(Options(max_message_size=16 << 20, max_queue=64, ping_interval=None))
    server.get("/")(handler_echo if handler else recv_send_echo)
    await server.listen(port)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def run_websockets(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=16 << 20, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def run_picows(port: int) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport, frame):  # type: ignore[no-untyped-def]
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type != WSMsgType.PING and frame.msg_type != WSMsgType.PONG:
                transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port, max_frame_size=16 << 20)
    print("ready", flush=True)
    async with server:
        await asyncio.Event().wait()


if __name__ == "__main__":
    impl, port = sys.argv[1], int(sys.argv[2])
    library = impl.removesuffix("-uvloop")
    main = {
        "wsstack": lambda: run_wsstack(port),
        "wsstack-handler": lambda: run_wsstack(port, handler=True),
        "websockets": lambda: run_websockets(port),
        "picows": lambda: run_picows(port),
    }[library]()
    if impl.endswith("-uvloop"):
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)
