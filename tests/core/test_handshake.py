"""The RFC 6455 opening handshake: server checks, client checks, extension grammar, URLs."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsstack.errors import InvalidHandshake
from wsstack.handshake import (
    GUID,
    ClientHandshake,
    ExtensionHeader,
    accept_key,
    accept_response,
    check_request,
    format_extensions,
    generate_key,
    is_upgrade_request,
    offered_subprotocols,
    parse_extensions,
    parse_ws_url,
    reject_response,
)
from wsstack.http11 import (
    Headers,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    serialize_request,
    serialize_response,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
RFC_REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def parse_request(data: bytes) -> Request:
    request = RequestParser().feed(data)
    assert request is not None
    return request


def parse_response(data: bytes) -> Response:
    response = ResponseParser().feed(data)
    assert response is not None
    return response


def upgrade_request(
    replace: dict[str, list[str]] | None = None, method: str = "GET", version: str = "HTTP/1.1"
) -> Request:
    """A valid upgrade request, with some fields replaced (an empty list removes the field)."""
    fields = {
        "Host": ["example.com"],
        "Upgrade": ["websocket"],
        "Connection": ["Upgrade"],
        "Sec-WebSocket-Key": [RFC_KEY],
        "Sec-WebSocket-Version": ["13"],
    }
    fields.update(replace or {})
    return Request(method, "/", Headers((name, value) for name, values in fields.items() for value in values), version)


# --- keys -----------------------------------------------------------------


def test_accept_key_matches_rfc6455_example() -> None:
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_generate_key_is_16_random_bytes() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)


# --- server side ----------------------------------------------------------


def test_rfc6455_example_request_is_accepted() -> None:
    request = parse_request(RFC_REQUEST)
    assert is_upgrade_request(request)
    assert check_request(request) == RFC_KEY
    assert offered_subprotocols(request) == ["chat", "superchat"]
    response = accept_response(request, subprotocol="chat")
    assert response.status == 101 and response.reason == "Switching Protocols"
    assert response.headers["Sec-WebSocket-Accept"] == RFC_ACCEPT
    assert response.headers["Sec-WebSocket-Protocol"] == "chat"
    assert serialize_response(response) == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"\r\n"
    )


def test_tokens_are_case_insensitive_and_listed() -> None:
    request = upgrade_request({"Upgrade": ["h2c, WebSocket"], "Connection": ["keep-alive", "UPGRADE"]})
    assert is_upgrade_request(request)
    assert check_request(request) == RFC_KEY


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (upgrade_request(method="POST"), 405),
        (upgrade_request(method="get"), 405),
        (upgrade_request(version="HTTP/1.0"), 400),
        (upgrade_request({"Host": []}), 400),
        (upgrade_request({"Host": [""]}), 400),
        (upgrade_request({"Host": ["a", "b"]}), 400),
        (upgrade_request({"Upgrade": []}), 400),
        (upgrade_request({"Upgrade": ["h2c"]}), 400),
        (upgrade_request({"Upgrade": ["websocket2"]}), 400),
        (upgrade_request({"Connection": []}), 400),
        (upgrade_request({"Connection": ["keep-alive"]}), 400),
        (upgrade_request({"Connection": ["upgrade-ish"]}), 400),
        (upgrade_request({"Sec-WebSocket-Version": []}), 426),
        (upgrade_request({"Sec-WebSocket-Version": ["8"]}), 426),
        (upgrade_request({"Sec-WebSocket-Version": ["13", "13"]}), 426),
        (upgrade_request({"Sec-WebSocket-Version": ["13, 8"]}), 426),
        (upgrade_request({"Sec-WebSocket-Key": []}), 400),
        (upgrade_request({"Sec-WebSocket-Key": [RFC_KEY, RFC_KEY]}), 400),
        (upgrade_request({"Sec-WebSocket-Key": ["not base64!"]}), 400),
        (upgrade_request({"Sec-WebSocket-Key": ["dGhlIHNhbXBsZSBub25jZQ"]}), 400),
        (upgrade_request({"Sec-WebSocket-Key": [base64.b64encode(b"x" * 15).decode()]}), 400),
        (upgrade_request({"Sec-WebSocket-Key": [base64.b64encode(b"x" * 17).decode()]}), 400),
        (upgrade_request({"Sec-WebSocket-Key": ["\xe9" * 24]}), 400),
    ],
)
def test_check_request_rejections(request_: Request, status: int) -> None:
    with pytest.raises(InvalidHandshake) as info:
        check_request(request_)
    assert info.value.status == status
    if status == 405:
        assert info.value.headers == [("Allow", "GET")]
    elif status == 426:
        assert info.value.headers == [("Sec-WebSocket-Version", "13")]
    else:
        assert info.value.headers == []
    with pytest.raises(InvalidHandshake):
        accept_response(request_)


def test_version_is_checked_before_the_key() -> None:
    """A client of another protocol draft learns the version even though its key fields differ."""
    with pytest.raises(InvalidHandshake) as info:
        check_request(upgrade_request({"Sec-WebSocket-Version": ["8"], "Sec-WebSocket-Key": []}))
    assert info.value.status == 426


def test_is_upgrade_request_is_a_cheap_filter() -> None:
    assert not is_upgrade_request(upgrade_request({"Upgrade": []}))
    assert not is_upgrade_request(upgrade_request({"Connection": ["close"]}))
    assert is_upgrade_request(upgrade_request({"Sec-WebSocket-Key": [], "Host": []}))
    assert not is_upgrade_request(Request("GET", "/", Headers()))


def test_offered_subprotocols() -> None:
    request = upgrade_request({"Sec-WebSocket-Protocol": ["chat, v2.chat", " ,mqtt"]})
    assert offered_subprotocols(request) == ["chat", "v2.chat", "mqtt"]
    assert offered_subprotocols(upgrade_request()) == []
    with pytest.raises(InvalidHandshake):
        offered_subprotocols(upgrade_request({"Sec-WebSocket-Protocol": ["chat, bad/name"]}))


def test_accept_response_options_and_refusals() -> None:
    request = upgrade_request({"Sec-WebSocket-Protocol": ["chat"]})
    response = accept_response(
        request, extensions="permessage-deflate; server_no_context_takeover", extra_headers=[("Server", "wsstack")]
    )
    assert "Sec-WebSocket-Protocol" not in response.headers
    assert response.headers["Sec-WebSocket-Extensions"] == "permessage-deflate; server_no_context_takeover"
    assert response.headers["server"] == "wsstack"
    with pytest.raises(ValueError):
        accept_response(request, subprotocol="superchat")
    with pytest.raises(ValueError):
        accept_response(upgrade_request(), subprotocol="chat")
    with pytest.raises(ValueError):
        accept_response(request, extensions="permessage-deflate; =")
    for name in ("Upgrade", "connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol"):
        with pytest.raises(ValueError):
            accept_response(request, extra_headers=[(name, "x")])


def test_reject_response() -> None:
    text = reject_response(400, "bad key: é", headers=[("Connection", "close")])
    assert (text.status, text.reason, text.body) == (400, "Bad Request", "bad key: é".encode())
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    wire = serialize_response(text)
    assert b"Content-Length: 11\r\n" in wire and b"Connection: close\r\n" in wire
    raw = reject_response(426, headers=[("Sec-WebSocket-Version", "13")])
    assert raw.body == b"" and "Content-Type" not in raw.headers and "Connection" not in raw.headers
    assert reject_response(404, "x", [("content-type", "text/html")]).headers.get_all("Content-Type") == ["text/html"]
    assert reject_response(499).reason == ""
    for status in (101, 199, 600):
        with pytest.raises(ValueError):
            reject_response(status)


def test_handshake_error_becomes_a_response() -> None:
    with pytest.raises(InvalidHandshake) as info:
        check_request(upgrade_request({"Sec-WebSocket-Version": ["7"]}))
    response = reject_response(info.value.status, str(info.value), info.value.headers)
    parsed = parse_response(serialize_response(response))
    assert parsed.status == 426 and parsed.headers["Sec-WebSocket-Version"] == "13"


# --- extension grammar ----------------------------------------------------


def test_parse_extensions_examples() -> None:
    assert parse_extensions([]) == []
    assert parse_extensions(["", " , ,"]) == []
    assert parse_extensions(
        [
            'permessage-deflate; client_max_window_bits="10" ;server_no_context_takeover, ,x-foo',
            "permessage-deflate;client_max_window_bits\t,bar ; a = b",
            'x; q="a\\bc"',
        ]
    ) == [
        ("permessage-deflate", [("client_max_window_bits", "10"), ("server_no_context_takeover", None)]),
        ("x-foo", []),
        ("permessage-deflate", [("client_max_window_bits", None)]),
        ("bar", [("a", "b")]),
        ("x", [("q", "abc")]),
    ]


@pytest.mark.parametrize(
    "value",
    [
        ";a",
        "a;",
        "a; ",
        "a;;b",
        "a; =b",
        "a; b=",
        "a; b= ,",
        "a b",
        "a, b c",
        "a; b=c d",
        'a; b="c',
        'a; b="c d"',
        'a; b=""',
        'a; b="c"d',
        'a; b="c\\"',
        "a; b=c=d",
        "a/b",
        "a; b/c",
        "a; b=\x00",
    ],
)
def test_parse_extensions_rejects_malformed(value: str) -> None:
    with pytest.raises(InvalidHandshake):
        parse_extensions([value])


def test_format_extensions() -> None:
    extensions: list[ExtensionHeader] = [
        ("permessage-deflate", [("client_max_window_bits", None), ("x", "15")]),
        ("e", []),
    ]
    assert format_extensions(extensions) == "permessage-deflate; client_max_window_bits; x=15, e"
    assert format_extensions([]) == ""
    malformed: list[list[ExtensionHeader]] = [
        [("a b", [])],
        [("a", [("p q", None)])],
        [("a", [("p", "needs quoting")])],
        [("a", [("p", "")])],
    ]
    for bad in malformed:
        with pytest.raises(ValueError):
            format_extensions(bad)


TCHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
tokens = st.text(TCHARS, min_size=1, max_size=12)
extension_lists = st.lists(st.tuples(tokens, st.lists(st.tuples(tokens, st.none() | tokens), max_size=4)), max_size=5)


@given(extension_lists)
def test_extension_round_trip(extensions: list[ExtensionHeader]) -> None:
    assert parse_extensions([format_extensions(extensions)]) == extensions


@given(extension_lists, st.data())
def test_quoted_and_spaced_forms_parse_the_same(extensions: list[ExtensionHeader], data: st.DataObject) -> None:
    """Quoting a value (escaping arbitrary characters) and adding whitespace changes nothing."""

    def quote(value: str) -> str:
        escaped = "".join("\\" + char if data.draw(st.booleans()) else char for char in value)
        return f'"{escaped}"'

    space = st.sampled_from(["", " ", "\t ", "  "])
    elements = []
    for name, params in extensions:
        element = name
        for param, value in params:
            element += f"{data.draw(space)};{data.draw(space)}{param}"
            if value is not None:
                shown = quote(value) if data.draw(st.booleans()) else value
                element += f"{data.draw(space)}={data.draw(space)}{shown}"
        elements.append(element)
    header = data.draw(space) + ",".join(f"{e}{data.draw(space)}" for e in elements)
    assert parse_extensions([header]) == extensions


@given(st.text(max_size=60))
def test_parse_extensions_only_raises_invalid_handshake(text: str) -> None:
    try:
        parse_extensions([text])
    except InvalidHandshake:
        pass


# --- client side ----------------------------------------------------------


def server_answer(request: Request, **kwargs: object) -> Response:
    """What a server would send, through real bytes both ways."""
    received = parse_request(serialize_request(request))
    return parse_response(serialize_response(accept_response(received, **kwargs)))  # type: ignore[arg-type]


def test_client_request_fields() -> None:
    client = ClientHandshake(
        "example.com",
        8080,
        "/chat?room=1",
        subprotocols=["chat", "superchat"],
        extensions="permessage-deflate; client_max_window_bits",
        origin="http://example.com",
        extra_headers=[("Authorization", "Bearer t")],
    )
    request = client.request()
    assert (request.method, request.target, request.version) == ("GET", "/chat?room=1", "HTTP/1.1")
    assert list(request.headers.items()) == [
        ("Host", "example.com:8080"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", client.key),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("Origin", "http://example.com"),
        ("Authorization", "Bearer t"),
    ]
    assert client.request() == request
    assert check_request(request) == client.key


@pytest.mark.parametrize(
    ("host", "port", "secure", "expected"),
    [
        ("example.com", 80, False, "example.com"),
        ("example.com", None, False, "example.com"),
        ("example.com", 443, False, "example.com:443"),
        ("example.com", 443, True, "example.com"),
        ("example.com", 80, True, "example.com:80"),
        ("::1", 80, False, "[::1]"),
        ("::1", 9000, True, "[::1]:9000"),
        ("[::1]", 9000, False, "[::1]:9000"),
        ("127.0.0.1", 8765, False, "127.0.0.1:8765"),
        ("bücher.example", None, False, "xn--bcher-kva.example"),
    ],
)
def test_client_host_field(host: str, port: int | None, secure: bool, expected: str) -> None:
    assert ClientHandshake(host, port, secure=secure).request().headers["Host"] == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": ""},
        {"port": 0},
        {"port": 65536},
        {"resource": "chat"},
        {"resource": "/a b"},
        {"resource": "/caf\xe9"},
        {"subprotocols": ["bad name"]},
        {"extensions": "a;"},
        {"extra_headers": [("Sec-WebSocket-Key", "x")]},
        {"extra_headers": [("upgrade", "x")]},
        {"extra_headers": [("HOST", "x")]},
        {"extra_headers": [("Origin", "x")]},
        {"extra_headers": [("Sec-WebSocket-Protocol", "x")]},
    ],
)
def test_client_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"host": "example.com", "port": None, **kwargs}
    with pytest.raises(ValueError):
        ClientHandshake(**arguments).request()  # type: ignore[arg-type]


def test_client_accepts_a_real_server_answer() -> None:
    client = ClientHandshake("example.com", None, subprotocols=["chat", "superchat"], extensions="permessage-deflate")
    response = server_answer(
        client.request(), subprotocol="superchat", extensions="permessage-deflate; client_max_window_bits=10"
    )
    assert client.check_response(response) == (
        "superchat",
        [("permessage-deflate", [("client_max_window_bits", "10")])],
    )
    plain = ClientHandshake("example.com", None)
    assert plain.check_response(server_answer(plain.request())) == (None, [])


def modified(response: Response, replace: dict[str, list[str]]) -> Response:
    dropped = {name.lower() for name in replace}
    kept = [(name, value) for name, value in response.headers.items() if name.lower() not in dropped]
    added = [(name, value) for name, values in replace.items() for value in values]
    return Response(response.status, response.reason, Headers(kept + added))


def test_client_rejections() -> None:
    client = ClientHandshake("example.com", None, subprotocols=["chat"])
    good = server_answer(client.request(), subprotocol="chat")
    bad_answers = [
        modified(good, {"Sec-WebSocket-Accept": [accept_key(generate_key())]}),
        modified(good, {"Sec-WebSocket-Accept": []}),
        modified(good, {"Sec-WebSocket-Accept": [accept_key(client.key)] * 2}),
        modified(good, {"Upgrade": []}),
        modified(good, {"Upgrade": ["h2c"]}),
        modified(good, {"Connection": []}),
        modified(good, {"Connection": ["close"]}),
        modified(good, {"Sec-WebSocket-Protocol": ["superchat"]}),
        modified(good, {"Sec-WebSocket-Protocol": ["chat, chat"]}),
        modified(good, {"Sec-WebSocket-Protocol": ["chat", "chat"]}),
        modified(good, {"Sec-WebSocket-Protocol": [""]}),
        modified(good, {"Sec-WebSocket-Extensions": ["permessage-deflate; ="]}),
    ]
    for response in bad_answers:
        with pytest.raises(InvalidHandshake):
            client.check_response(response)
    assert client.check_response(good) == ("chat", [])


def test_client_rejects_a_non_101_status_and_says_which() -> None:
    client = ClientHandshake("example.com", None)
    for response, text in (
        (parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), "200 OK"),
        (parse_response(b"HTTP/1.1 403\r\n\r\n"), "403"),
    ):
        with pytest.raises(InvalidHandshake) as info:
            client.check_response(response)
        assert text in str(info.value)
        assert info.value.status == response.status


def test_client_requires_the_subprotocol_it_offered_none_of() -> None:
    client = ClientHandshake("example.com", None)
    response = modified(server_answer(client.request()), {"Sec-WebSocket-Protocol": ["chat"]})
    with pytest.raises(InvalidHandshake):
        client.check_response(response)


# --- URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://example.com", (False, "example.com", 80, "/")),
        ("wss://example.com", (True, "example.com", 443, "/")),
        ("WSS://Example.COM:8443/chat", (True, "example.com", 8443, "/chat")),
        ("ws://example.com/a/b?x=1&y=%20", (False, "example.com", 80, "/a/b?x=1&y=%20")),
        ("ws://example.com?x", (False, "example.com", 80, "/?x")),
        ("ws://example.com/?", (False, "example.com", 80, "/")),
        ("ws://[::1]:9000/", (False, "::1", 9000, "/")),
        ("wss://127.0.0.1", (True, "127.0.0.1", 443, "/")),
    ],
)
def test_parse_ws_url(url: str, expected: tuple[bool, str, int, str]) -> None:
    assert parse_ws_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "example.com",
        "ws:/path",
        "ws://",
        "ws://:80/",
        "ws://example.com/#frag",
        "ws://example.com/#",
        "ws://user:pw@example.com/",
        "ws://example.com:99999/",
        "ws://example.com:0/",
        "ws://example.com:port/",
        "ws://[::1/",
        "ws://example.com/caf\xe9",
    ],
)
def test_parse_ws_url_rejections(url: str) -> None:
    with pytest.raises(ValueError):
        parse_ws_url(url)


def test_url_to_handshake() -> None:
    secure, host, port, resource = parse_ws_url("wss://[::1]:8443/feed?id=7")
    request = ClientHandshake(host, port, resource, secure=secure).request()
    assert request.headers["Host"] == "[::1]:8443" and request.target == "/feed?id=7"
