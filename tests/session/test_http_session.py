"""A server's request cycle, as every transport now runs it, driven in memory."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from wsstack.connection import ClientConnection, State
from wsstack.errors import ConnectionClosed, HandshakeError, InvalidHandshake
from wsstack.http11 import Request, Response
from wsstack.options import Options
from wsstack.routing import HTTPResponse, RoutedServer, plain_response
from wsstack.session import HTTPSession

UPGRADE = ClientConnection("ws://127.0.0.1/ws", origin="https://good.example").data_to_send()


def handler(ctx: Any) -> None:
    """A route handler; the cycle only passes it back."""


def server(**settings: Any) -> RoutedServer[Any]:
    routed: RoutedServer[Any] = RoutedServer(Options(), **settings)
    routed.get("/ws")(handler)
    routed.post("/form")(handler)
    return routed


def receive(http: HTTPSession, data: bytes) -> Request:
    http.core.receive_data(data)
    request = http.next_request()
    assert request is not None
    return request


def plain(method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def test_a_request_goes_to_its_route() -> None:
    http = HTTPSession(server())
    request = receive(http, UPGRADE)
    assert http.core.state is State.REQUEST_RECEIVED
    assert http.route(request) == (handler, None, None)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [(plain("GET", "/nowhere"), 404), (plain("DELETE", "/ws"), 405)],
)
def test_unknown_paths_and_methods_keep_the_connection(request_bytes: bytes, status: int) -> None:
    http = HTTPSession(server())
    found, answer, keep_alive = http.route(receive(http, request_bytes))
    assert found is None and answer is not None and answer.status == status
    assert keep_alive is None
    assert http.respond(answer, keep_alive) is False
    assert http.core.data_to_send().startswith(f"HTTP/1.1 {status} ".encode())
    assert http.core.state is State.KEEP_ALIVE  # reading the next request


def test_a_browser_from_another_origin_gets_403_and_a_closed_connection() -> None:
    http = HTTPSession(server(allowed_origins=["https://other.example"]))
    found, answer, keep_alive = http.route(receive(http, UPGRADE))
    assert found is None and answer is not None and answer.status == 403 and keep_alive is False
    assert http.respond(answer, keep_alive) is True


def test_an_upgrade_past_max_connections_gets_503() -> None:
    routed = server(max_connections=1)
    routed.connections.add(object())
    http = HTTPSession(routed)
    _, answer, keep_alive = http.route(receive(http, UPGRADE))
    assert answer is not None and answer.status == 503 and keep_alive is False


def test_head_is_answered_without_a_body() -> None:
    http = HTTPSession(server())
    receive(http, plain("HEAD", "/ws"))
    http.respond(plain_response(200, "page"))
    head = http.core.data_to_send()
    assert head.startswith(b"HTTP/1.1 200 OK") and not head.endswith(b"page")


def test_a_plain_answer_closes_when_the_client_or_the_server_says_so() -> None:
    http = HTTPSession(server())
    receive(http, plain("GET", "/ws", "Connection: close\r\n"))
    assert http.respond(plain_response(200)) is True
    routed = server()
    http = HTTPSession(routed)
    receive(http, plain("GET", "/ws"))
    routed.closing = True
    assert http.respond(plain_response(200)) is True


def test_a_second_answer_is_not_sent() -> None:
    http = HTTPSession(server())
    receive(http, plain("GET", "/ws", "Connection: close\r\n"))
    http.respond(plain_response(200))
    http.core.data_to_send()
    assert http.respond(plain_response(500)) is None
    assert http.core.data_to_send() == b""


def test_outcomes_of_a_handler() -> None:
    http = HTTPSession(server())
    request = receive(http, plain("GET", "/ws"))
    page = HTTPResponse(201, body="made")
    answer = http.outcome(request, False, page, None)
    assert isinstance(answer, Response) and answer.status == 201
    assert http.outcome(request, True, page, None) == (1000, "")
    assert http.outcome(request, True, page, HandshakeError("refused")) is None
    assert http.outcome(request, True, page, ConnectionClosed(1001)) is None
    failed = http.outcome(request, False, page, RuntimeError("bug"))
    assert isinstance(failed, Response) and failed.status == 500
    assert http.outcome(request, True, page, RuntimeError("bug")) == (1011, "internal error")


def test_a_failing_handler_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    http = HTTPSession(server())
    request = receive(http, plain("GET", "/ws"))
    with caplog.at_level(logging.ERROR, logger="wsstack"):
        http.outcome(request, False, HTTPResponse(), RuntimeError("bug"))
    (record,) = caplog.records
    assert "GET /ws" in record.getMessage() and record.exc_info is not None


def test_upgrade_accepts_a_valid_request() -> None:
    http = HTTPSession(server())
    receive(http, UPGRADE)
    assert http.upgrade(None, None) is None
    assert http.core.state is State.OPEN
    assert http.core.data_to_send().startswith(b"HTTP/1.1 101 ")


def test_upgrade_of_a_plain_request_answers_its_status_and_closes() -> None:
    http = HTTPSession(server())
    receive(http, plain("GET", "/ws"))
    error = http.upgrade(None, None)
    assert isinstance(error, InvalidHandshake) and error.status == 400
    assert http.core.data_to_send().startswith(b"HTTP/1.1 400 ")
    assert http.core.state is State.CLOSED


@pytest.mark.parametrize("cause", ["closing", "full"])
def test_upgrade_during_shutdown_or_at_capacity_is_503(cause: str) -> None:
    routed = server(max_connections=1)
    http = HTTPSession(routed)
    receive(http, UPGRADE)
    if cause == "closing":
        routed.closing = True
    else:
        routed.connections.add(object())
    error = http.upgrade(None, None)
    assert error is not None and error.status == 503
    assert http.core.data_to_send().startswith(b"HTTP/1.1 503 ")
