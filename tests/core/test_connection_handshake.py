"""The opening handshake as the connection runs it: routing hooks, accept, reject, keep-alive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import masked, open_pair, transfer, unmasked
from wsstack.connection import ClientConnection, ServerConnection, State
from wsstack.errors import InvalidHandshake, InvalidState
from wsstack.events import HandshakeComplete, HandshakeFailed, RequestReceived, TextMessage
from wsstack.http11 import Headers, Response, ResponseParser
from wsstack.options import HTTPLimits, Options

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


def test_accepting_a_subprotocol_not_offered_is_the_callers_value_error() -> None:
    """Not the client's fault, so not an ``InvalidHandshake`` (a 400): the request stays pending for a 500."""
    server = ServerConnection()
    server.receive_data(UPGRADE + b"Sec-WebSocket-Protocol: superchat\r\n\r\n")
    server.events()
    with pytest.raises(ValueError, match="'chat' was not offered") as info:
        server.accept(subprotocol="chat")
    assert not isinstance(info.value, InvalidHandshake)
    assert server.state is State.REQUEST_RECEIVED and server.data_to_send() == b""
    server.respond(Response(500, "Internal Server Error", Headers()))
    assert response_of(server.data_to_send()).status == 500


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


def test_a_refusal_error_carries_the_answer() -> None:
    client = ClientConnection("ws://example.com/")
    client.receive_data(b"HTTP/1.1 403 Forbidden\r\nX-Reason: banned\r\nContent-Length: 2\r\n\r\nno")
    [event] = client.events()
    assert isinstance(event, HandshakeFailed)
    error = event.error
    assert (error.status, error.headers, error.body) == (403, [("X-Reason", "banned"), ("Content-Length", "2")], b"no")


@given(st.binary(max_size=300), st.data())
def test_a_refusal_body_delimited_by_the_close_in_any_split(body: bytes, data: st.DataObject) -> None:
    stream = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n" + body
    cuts = sorted(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=4, unique=True)))
    client = ClientConnection("ws://example.com/")
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        client.receive_data(stream[start:end])
        assert client.events() == []  # the body runs until the close
    assert client.state is State.CONNECTING
    client.receive_data(b"")
    [event] = client.events()
    assert isinstance(event, HandshakeFailed) and event.response is not None
    assert (event.error.status, event.error.body, event.response.body) == (503, body, body)
    assert client.state is State.CLOSED


def test_a_refusal_body_delimited_by_the_close_is_bounded() -> None:
    client = ClientConnection("ws://example.com/", Options(http_limits=HTTPLimits(max_body_size=10)))
    client.receive_data(b"HTTP/1.1 404 Not Found\r\n\r\n0123456")
    assert client.events() == []
    client.receive_data(b"789abcdef")
    [event] = client.events()  # the bound reached: no need to wait for the close
    assert isinstance(event, HandshakeFailed) and event.error.body == b"0123456789"
    assert client.state is State.CLOSED
    client.receive_data(b"more")
    client.receive_data(b"")
    assert client.events() == []


def test_a_bodiless_refusal_does_not_wait_for_the_close() -> None:
    for head in (b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\n\r\n"):
        client = ClientConnection("ws://example.com/")
        client.receive_data(head)
        [event] = client.events()
        assert isinstance(event, HandshakeFailed) and event.error.body == b""


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
