"""One read buffer per thread, shared by every connection of the thread's event loop.

asyncio's socket transport reads for a plain ``Protocol`` with
``recv(262144)``: a new 256 KiB bytes object per read, shrunk to what
arrived. glibc serves a block that large from ``mmap`` until its threshold
has adapted, so the cost of a read depends on the process's history:
allocating it cost 18.6 us against 2.6 us for ``recv_into`` (issue #13's
profile), and a 64 KiB pipelined client swung 2x between two processes of
one benchmark (docs/benchmarks.md). The connections here are
``BufferedProtocol`` instead: the transport reads into this buffer, and the
core is handed a view of the bytes that arrived.

One buffer serves every connection of a thread because a loop runs one
callback at a time and nothing keeps the view past the call: the core
copies whatever it holds on to (a partial frame, a message's fragments)
before ``receive_data`` returns (``tests/core/test_buffer_reuse.py``). The
TLS layer decrypts into the same buffer for the same reason.
"""

from __future__ import annotations

import threading

__all__ = ["SIZE", "scratch"]

#: What asyncio's socket transport reads at most per ``recv``; one read reaches the core in one call.
SIZE = 256 * 1024

_local = threading.local()


def scratch() -> memoryview:
    """This thread's buffer, made on first use."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(SIZE))
    return view
