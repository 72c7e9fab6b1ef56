"""atheris target: the HTTP/1.1 head parser and the server's opening handshake on any bytes.

    python fuzz/fuzz_http.py -max_total_time=600 [corpus_dir]

Every input must end as a parsed request (accepted or refused with a typed
``InvalidHandshake``), a ``HandshakeFailed`` event with a 4xx/5xx answer, or
a wait for more bytes.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wsstack.connection import ServerConnection, State
    from wsstack.errors import HTTPParseError, InvalidHandshake
    from wsstack.events import HandshakeFailed, RequestReceived
    from wsstack.http11 import ResponseParser


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    split = provider.ConsumeIntInRange(0, 64)
    body = provider.ConsumeBytes(provider.remaining_bytes())
    server = ServerConnection()
    for chunk in (body[:split], body[split:]):
        if not chunk or server.state is not State.CONNECTING:
            continue
        server.receive_data(chunk)
        for event in server.events():
            if isinstance(event, RequestReceived):
                try:
                    server.accept()
                except InvalidHandshake as exc:
                    assert 400 <= exc.status < 600
                    server.reject(exc.status, str(exc), exc.headers)
            else:
                assert isinstance(event, HandshakeFailed)
                assert 400 <= event.error.status < 600
    server.data_to_send()
    try:
        ResponseParser().feed(body)
    except HTTPParseError as exc:
        assert 400 <= exc.status < 600


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
