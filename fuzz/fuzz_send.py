"""atheris target: the send path's C functions against their Python twins on any text, bytes and key.

    python fuzz/fuzz_send.py -max_total_time=600 [corpus_dir]

``serialize_text`` and ``serialize_frame`` (csrc/fastcall.c) must build the
same frame as ``_pyspeedups`` for every input, or raise the same exception
type: text with lone surrogates, any first byte, keys of any length. Their
client forms, which draw a key themselves, must build the frame the Python
twin builds with that key.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wsstack import _cspeedups, _pyspeedups


def outcome(call: object, *args: object) -> object:
    try:
        return call(*args)  # type: ignore[operator]
    except Exception as exc:  # the type is the result to compare
        return type(exc)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    first = provider.ConsumeIntInRange(-1, 256)
    key = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 5)) if provider.ConsumeBool() else None
    text = provider.ConsumeUnicode(provider.ConsumeIntInRange(0, 70_000))
    payload = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 70_000))
    for name, argument in (("serialize_text", text), ("serialize_frame", payload)):
        c = outcome(getattr(_cspeedups, name), first, argument, key)
        python = outcome(getattr(_pyspeedups, name), first, argument, key)
        assert c == python, (name, first, key, c, python)
        # The client form draws its own key: the frame must be the server form's with that key.
        client = outcome(getattr(_cspeedups, name.replace("serialize_", "serialize_client_")), first, argument)
        if isinstance(client, bytes):
            size = len(argument.encode() if isinstance(argument, str) else argument)
            drawn = client[len(client) - size - 4 : len(client) - size]
            assert client == outcome(getattr(_pyspeedups, name), first, argument, drawn), (name, drawn)
        else:
            assert client == outcome(getattr(_pyspeedups, name), first, argument, None), (name, client)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
