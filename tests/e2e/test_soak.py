"""The soak of benchmarks/soak.py in its short form, against both servers, and proof that its checks can fail.

The short form is 100 clients x 200 messages a round (the issue's example)
with messages up to 64 KiB rather than 256 KiB: the same log-uniform
sizes, a mean of 5.8 KiB instead of 20.5 KiB, so that a server's two rounds
take seconds rather than half a minute in the pure-Python run under
coverage. Everything else (deflate on half the clients, the vanishing, the
stopped and the burst of clients, random close codes, the checks of the
server's tasks, threads, memory and log) is the benchmark's, by import.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import soak

from waiting import bounded
from wsstack.asyncio import Server
from wsstack.options import Options

SHORT = soak.Config(clients=100, messages=200, processes=2, seed=15, max_size=64 << 10)


@pytest.mark.parametrize("server", soak.SERVERS)
@bounded(150)
def test_short_soak_loses_nothing(server: str) -> None:
    result = soak.soak(server, SHORT)
    failed = [f"{check.name}: {check.detail}" for check in result.checks if not check.ok]
    assert result.passed, failed
    assert [r.messages for r in result.rounds] == [SHORT.clients * SHORT.messages + SHORT.burst] * 2


def test_every_wrong_echo_is_named() -> None:
    payloads = soak.Payloads(random.Random(1))
    rng = random.Random(2)
    text, meant_text = payloads.make(rng, 1000, True)
    data, meant = payloads.make(rng, 1000, False)
    assert isinstance(text, str) and isinstance(data, bytes)
    assert soak.mismatch(meant_text, text) is None
    assert soak.mismatch(meant, data) is None
    changed = bytes([data[0] ^ 1]) + data[1:]
    for wrong in (changed, data[:-1], data + b"\0", data.decode("latin-1"), None):
        assert soak.mismatch(meant, wrong) is not None
    assert soak.mismatch(meant_text, text.encode()) is not None  # the same bytes as binary


def test_sizes_are_log_uniform_from_0_to_the_largest() -> None:
    rng = random.Random(3)
    sizes = [soak.message_size(rng, soak.MAX_SIZE) for _ in range(18_000)]
    assert min(sizes) == 0 and max(sizes) <= soak.MAX_SIZE
    # Each of the 18 powers of two is as likely as the next: about 1,000 sizes in each.
    for bits in range(18):
        in_octave = sum(1 for size in sizes if 2**bits <= size + 1 < 2 ** (bits + 1))
        assert 800 < in_octave < 1200, (bits, in_octave)


async def lossy_server(change: str) -> Server:
    """An echo server that loses, changes or swaps its connections' fifth message."""
    server = Server(Options(enable_compression=True))

    @server.get("/")
    async def echo(ctx):  # type: ignore[no-untyped-def]
        ws = await ctx.upgrade_to_websocket()
        count = 0
        held = None
        while (message := await ws.recv()) is not None:
            count += 1
            if count == 5 and change == "lose":
                continue
            if count == 5 and change == "change":
                message = message[:-1] + ("!" if isinstance(message, str) else b"!")
            if count == 5 and change == "swap":
                held = message
                continue
            await ws.send(message)
            if held is not None:
                await ws.send(held)
                held = None

    await server.listen(0)
    return server


@pytest.mark.parametrize("change", ["lose", "change", "swap"])
@bounded(30)
def test_the_clients_see_a_message_lost_changed_or_out_of_order(change: str) -> None:
    async def main() -> soak.Tally:
        server = await lossy_server(change)
        try:
            share = soak.Share(server.port, 0, 4, 20, 0, 0, 0, seed=7, max_size=4096)
            return await soak.ClientProcess(share).run()
        finally:
            await server.close()

    tally = asyncio.run(main())
    assert tally.failed == 4, tally.failures
    assert all("message 4: expected" in failure for failure in tally.failures), tally.failures
    assert tally.messages == 4 * 4
