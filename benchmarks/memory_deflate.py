"""Memory per compressed connection: RSS growth over 1,000 connections, ours beside websockets'.

    PYTHONPATH=src python benchmarks/memory_deflate.py

tracemalloc cannot see zlib's allocations, so each case runs in a fresh
process that reads its resident set size (/proc/self/statm) before and after
making 1,000 extension objects, each of which compressed one message and
decompressed one. "1 KiB" is one small message each way; "64 KiB" is enough
traffic to fill a 15-bit window, the steady state of a busy connection.
zlib touches its buffers only as data flows, so the two differ. "idle" is a
connection that negotiated compression and has sent nothing yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from collections.abc import Callable

CONNECTIONS = 1000
PAGE = os.sysconf("SC_PAGE_SIZE")
LIMIT = 1 << 20


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def message(size: int) -> bytes:
    # Mildly compressible, like JSON: both sides' buffers fill as they would in real traffic.
    return (os.urandom(size // 4).hex() * 2)[:size].encode()


def wsstack_factory(window: int, memory_level: int, exchange: bool) -> Callable[[bytes, bytes], object]:
    from wsstack.extensions import PerMessageDeflate

    def make(outgoing: bytes, incoming: bytes) -> object:
        ext = PerMessageDeflate(compress_window_bits=window, decompress_window_bits=window, memory_level=memory_level)
        if exchange:
            ext.encode(outgoing)
            ext.decode(0x40, incoming, True, LIMIT)
        return ext

    return make


def websockets_factory(window: int, memory_level: int, exchange: bool) -> Callable[[bytes, bytes], object]:
    from websockets.extensions.permessage_deflate import PerMessageDeflate
    from websockets.frames import Frame, Opcode

    def make(outgoing: bytes, incoming: bytes) -> object:
        ext = PerMessageDeflate(False, False, window, window, {"memLevel": memory_level})
        if exchange:
            ext.encode(Frame(Opcode.BINARY, outgoing))
            ext.decode(Frame(Opcode.BINARY, incoming, rsv1=True), max_size=LIMIT)
        return ext

    return make


CASES = {
    # name: (library, window bits, memory level)
    "wsstack, defaults (15/8)": ("wsstack", 15, 8),
    "websockets, defaults (12/5)": ("websockets", 12, 5),
    "wsstack at websockets' 12/5": ("wsstack", 12, 5),
    "websockets at 15/8": ("websockets", 15, 8),
}


def measure(library: str, window: int, memory_level: int, size: int) -> float:
    """Bytes per connection; runs in its own process."""
    factory = wsstack_factory if library == "wsstack" else websockets_factory
    make = factory(window, memory_level, size > 0)
    outgoing = message(max(size, 1))
    compressor = zlib.compressobj(6, zlib.DEFLATED, -window, memory_level)
    incoming = (compressor.compress(outgoing) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    make(outgoing, incoming)  # warm up imports and first-use allocations outside the measure
    keep = []
    before = rss()
    for _ in range(CONNECTIONS):
        keep.append(make(outgoing, incoming))
    return (rss() - before) / CONNECTIONS


def main() -> None:
    if len(sys.argv) == 5:
        library, window, memory_level, size = sys.argv[1], *map(int, sys.argv[2:])
        print(measure(library, window, memory_level, size))
        return
    print(f"RSS growth per connection over {CONNECTIONS} connections (window bits/memory level)")
    print(f"{'':32} {'idle':>10} {'1 KiB':>10} {'64 KiB':>10}")
    for name, (library, window, memory_level) in CASES.items():
        row = []
        for size in (0, 1024, 65536):
            args = [sys.executable, __file__, library, str(window), str(memory_level), str(size)]
            out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
            row.append(f"{float(out) / 1024:8.1f}KiB")
        print(f"{name:32} {row[0]:>10} {row[1]:>10} {row[2]:>10}")
    deflate = (1 << (15 + 2)) + (1 << (8 + 9))
    print(f"zlib's formula at 15/8: deflate {deflate >> 10} KiB + inflate {(1 << 15) >> 10} KiB + ~7 KiB")


if __name__ == "__main__":
    main()
