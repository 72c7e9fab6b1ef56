"""The opening handshake as the connection runs it: routing hooks, accept, reject, keep-alive."""

from __future__ import annotations

import pytest

from helpers import masked, open_pair, transfer, unmasked
from wsstack.connection import ClientConnection, ServerConnection, State
from wsstack.errors import InvalidHandshake, InvalidState
from wsstack.events import HandshakeComplete, HandshakeFailed, RequestReceived, TextMessage
from wsstack.http11 import Headers, Response, ResponseParser
from wsstack.options import Options

UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def response_of(data: bytes) -> Response:
    response = ResponseParser().feed(data)
    assert isinstance(response, Response)
    return response


def test_request_exposed_for_routing_then_accepted() -> None:
    server = ServerConnection()
    server.receive_data(UPGRADE + b"\r\n")
    [event] = server.events()
    assert isinstance(event, RequestReceived)
    assert (event.request.path, event.request.query_params) == ("/chat", {"room": ["1"]})
    server.accept()
    response = response_of(server.data_to_send())
    assert response.status == 101
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert server.state is State.OPEN


def test_frames_in_the_same_packet_as_the_request() -> None:
    server = ServerConnection()
    server.receive_data(UPGRADE + b"\r\n" + masked(0x81, b"early"))
    assert [type(e) for e in server.events()] == [RequestReceived]
    server.accept()
    assert server.events() == [TextMessage("early")]


def test_frames_in_the_same_packet_as_the_101() -> None:
    client = ClientConnection("ws://example.com/")
    server = ServerConnection()
    transfer(client, server)
    server.accept()
    server.send("hello")
    events = transfer(server, client)
    assert isinstance(events[0], HandshakeComplete)
    assert events[1:] == [TextMessage("hello")]


def test_invalid_upgrade_is_refused_with_its_status() -> None:
    server = ServerConnection()
    server.receive_data(UPGRADE.replace(b"Version: 13", b"Version: 8") + b"\r\n")
    server.events()
    with pytest.raises(InvalidHandshake) as info:
        server.accept()
    assert info.value.status == 426
    server.reject(info.value.status, str(info.value), info.value.headers)
    response = response_of(server.data_to_send())
    assert response.status == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"
    assert server.state is State.CLOSED


def test_malformed_http_answered_and_closed() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    [event] = server.events()
    assert isinstance(event, HandshakeFailed) and event.error.status == 400
    assert response_of(server.data_to_send()).status == 400
    assert server.state is State.CLOSED


def test_oversized_head_is_431() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200)
    [event] = server.events()
    assert isinstance(event, HandshakeFailed) and event.error.status == 431
    assert response_of(server.data_to_send()).status == 431


def test_plain_http_keeps_the_connection_alive() -> None:
    server = ServerConnection()
    server.receive_data(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n" + UPGRADE + b"\r\n")
    [first] = server.events()
    assert first.request.path == "/index.html"
    server.respond(Response(200, "OK", Headers([("Content-Type", "text/html")]), body=b"<p>hi</p>"))
    assert response_of(server.data_to_send()).body == b"<p>hi</p>"
    [second] = server.events()
    assert isinstance(second, RequestReceived) and second.request.path == "/chat"
    server.accept()
    assert server.state is State.OPEN


def test_connection_close_request_ends_after_response() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    server.events()
    server.respond(Response(404, "Not Found", Headers()))
    assert response_of(server.data_to_send()).headers["Connection"] == "close"
    assert server.state is State.CLOSED


def test_accept_without_request_is_invalid_state() -> None:
    with pytest.raises(InvalidState):
        ServerConnection().accept()


def test_subprotocol_negotiated() -> None:
    client, server = open_pair(Options(subprotocol="chat"), subprotocols=["binary", "chat"])
    assert client.subprotocol == server.subprotocol == "chat"


def test_subprotocol_not_offered_is_not_chosen() -> None:
    client, server = open_pair(Options(subprotocol="chat"), subprotocols=["binary"])
    assert client.subprotocol is server.subprotocol is None


def test_client_rejects_a_bad_accept_key() -> None:
    client = ClientConnection("ws://example.com/")
    client.data_to_send()
    client.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    [event] = client.events()
    assert isinstance(event, HandshakeFailed)
    assert client.state is State.CLOSED


def test_client_rejects_an_unoffered_extension() -> None:
    client = ClientConnection("ws://example.com/")
    server = ServerConnection()
    transfer(client, server)
    server.accept(headers=())
    answer = server.data_to_send().replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: x-unknown\r\n\r\n")
    client.receive_data(answer)
    [event] = client.events()
    assert isinstance(event, HandshakeFailed) and "x-unknown" in str(event.error)


def test_client_reports_a_refusal_with_its_status() -> None:
    client = ClientConnection("ws://example.com/")
    client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    [event] = client.events()
    assert isinstance(event, HandshakeFailed)
    assert event.response is not None and event.response.status == 403 and event.response.body == b"no"


def test_eof_during_handshake() -> None:
    client = ClientConnection("ws://example.com/")
    client.receive_data(b"HTTP/1.1 101 Switching")
    client.receive_data(b"")
    [event] = client.events()
    assert isinstance(event, HandshakeFailed)


def test_open_pair_exchanges_messages() -> None:
    client, server = open_pair()
    client.send("ping?")
    assert transfer(client, server) == [TextMessage("ping?")]
    server.send("pong!")
    assert client.data_to_send() == b""
    assert server.data_to_send() == unmasked(0x81, b"pong!")
