"""Per-message deflate: an echo server that compresses when the client offers permessage-deflate.

Compression (RFC 7692) pays off for large, repetitive messages such as JSON
or logs; for small ones the zlib call costs more than the bytes it saves.
Browsers always offer it. A client that does not offer it still connects,
uncompressed.
"""

from __future__ import annotations

import argparse

from wsstack import Options
from wsstack.asyncio import Context, Server


def build_server() -> Server:
    """An echo server on /ws that upgrades with compression enabled."""
    srv = Server()

    @srv.get("/ws")
    async def echo(ctx: Context) -> None:
        opts = Options(
            enable_compression=True,
            compression_level=6,
        )
        ws = await ctx.upgrade_to_websocket(opts)
        print(f"Connected with extensions: {ws.extensions or 'none'}")
        while (msg := await ws.recv()) is not None:
            await ws.send(msg)

    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"Compressing echo server on ws://{args.host}:{args.port}/ws")
    build_server().run(args.port, args.host)


if __name__ == "__main__":
    main()
