"""HTTP/1.1 head parsing and serialization: behaviour, every error status, and properties."""

from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsstack.errors import HTTPParseError, InvalidState
from wsstack.http11 import (
    Headers,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    is_token,
    serialize_request,
    serialize_response,
)
from wsstack.options import HTTPLimits

RFC6455_REQUEST = (
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


def feed_bytewise(parser: RequestParser | ResponseParser, data: bytes) -> Request | Response | None:
    result = None
    for i in range(len(data)):
        assert result is None, "message completed before its last byte"
        result = parser.feed(data[i : i + 1])
    return result


# --- Headers --------------------------------------------------------------


def test_headers_are_case_insensitive_ordered_and_multi_valued() -> None:
    headers = Headers([("Set-Thing", "a"), ("X-Other", "b")])
    headers.add("set-thing", "c")
    assert headers.get("SET-THING") == "a"
    assert headers["set-thing"] == "a"
    assert headers.get_all("Set-Thing") == ["a", "c"]
    assert headers.get("missing") is None
    assert headers.get("missing", "d") == "d"
    assert headers.get_all("missing") == []
    assert "x-other" in headers and "nope" not in headers and 3 not in headers
    assert len(headers) == 3
    assert list(headers) == ["Set-Thing", "X-Other", "set-thing"]
    assert list(headers.items()) == [("Set-Thing", "a"), ("X-Other", "b"), ("set-thing", "c")]
    assert headers.raw == list(headers.items())
    assert repr(headers) == "Headers([('Set-Thing', 'a'), ('X-Other', 'b'), ('set-thing', 'c')])"
    with pytest.raises(KeyError):
        headers["missing"]


def test_a_name_given_three_times_keeps_every_value_in_order() -> None:
    headers = Headers([("X-Hop", "1"), ("Other", "o"), ("x-hop", "2"), ("X-HOP", "3, 4")])
    assert headers.get_all("x-hop") == ["1", "2", "3, 4"]
    assert headers.get_tokens("X-Hop") == ["1", "2", "3", "4"]
    assert headers.get("X-Hop") == headers["x-hop"] == "1"
    assert headers.get_all("other") == ["o"] and headers.get_tokens("Other") == ["o"]
    assert headers == Headers([("x-hop", "1"), ("x-hop", "2"), ("x-hop", "3, 4"), ("other", "o")])
    assert headers != Headers([("x-hop", "1"), ("x-hop", "2"), ("other", "o")])


def test_requests_share_their_header_names_method_and_version() -> None:
    """A server keeps every connection's request: the strings that repeat are one object each, not one per request."""
    first = RequestParser().feed(RFC6455_REQUEST)
    second = RequestParser().feed(RFC6455_REQUEST)
    assert first is not None and second is not None
    for (name_1, value_1), (name_2, value_2) in zip(first.headers.items(), second.headers.items()):
        assert name_1 is name_2
        assert value_1 == value_2
    assert first.method is second.method and first.version is second.version
    # The index's lower-case names too: every request's "host" is the one interned string.
    (key_1,) = (key for key in first.headers._index if key == "host")
    (key_2,) = (key for key in second.headers._index if key == "host")
    assert key_1 is key_2


def test_headers_raw_is_a_copy() -> None:
    headers = Headers([("A", "1")])
    headers.raw.append(("B", "2"))
    assert len(headers) == 1


def test_headers_equality_is_semantic() -> None:
    assert Headers([("A", "1"), ("B", "2")]) == Headers([("b", "2"), ("a", "1")])
    assert Headers([("A", "1"), ("A", "2")]) != Headers([("A", "2"), ("A", "1")])
    assert Headers([("A", "1")]) != Headers([("A", "1"), ("A", "1")])
    assert Headers() != [("A", "1")]


def test_get_tokens_splits_all_values_and_drops_empty_elements() -> None:
    headers = Headers([("Connection", " keep-alive ,Upgrade"), ("connection", ", ,close,\t")])
    assert headers.get_tokens("CONNECTION") == ["keep-alive", "Upgrade", "close"]
    assert headers.get_tokens("missing") == []


def test_is_token() -> None:
    assert is_token("permessage-deflate") and is_token("!#$%&'*+-.^_`|~09AZaz")
    assert not is_token("") and not is_token("a b") and not is_token("a,b") and not is_token("é")


# --- Request --------------------------------------------------------------


def test_request_path_and_query() -> None:
    request = Request("GET", "/a%20b/c?x=1&y=&x=2&z", Headers())
    assert request.path == "/a%20b/c"
    assert request.query == "x=1&y=&x=2&z"
    assert request.query_params == {"x": ["1", "2"], "y": [""], "z": [""]}
    bare = Request("GET", "/plain", Headers())
    assert bare.path == "/plain" and bare.query == "" and bare.query_params == {}


# --- Parsing --------------------------------------------------------------


def test_parses_the_rfc6455_example_request() -> None:
    request = RequestParser().feed(RFC6455_REQUEST)
    assert isinstance(request, Request)
    assert (request.method, request.target, request.version, request.body) == ("GET", "/chat", "HTTP/1.1", b"")
    assert request.headers["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert request.headers.get_tokens("Sec-WebSocket-Protocol") == ["chat", "superchat"]
    assert len(request.headers) == 7


def test_parse_one_byte_at_a_time_keeps_leftover() -> None:
    parser = RequestParser()
    assert feed_bytewise(parser, RFC6455_REQUEST) == RequestParser().feed(RFC6455_REQUEST)
    assert parser.leftover == b""


def test_first_frames_in_the_same_packet_as_a_101_are_leftover() -> None:
    frame = b"\x81\x05hello"
    parser = ResponseParser()
    response = parser.feed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n" + frame
    )
    assert isinstance(response, Response)
    assert response.status == 101 and response.body == b""
    assert parser.leftover == frame


def test_request_body_is_read_and_keep_alive_reuses_the_parser() -> None:
    first = b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    second = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    parser = RequestParser()
    assert parser.feed(first[:-2]) is None
    request = parser.feed(first[-2:] + second[:10])
    assert request is not None and request.body == b"hello"
    rest = parser.leftover
    parser.reset()
    assert parser.feed(rest) is None
    follow = parser.feed(second[10:])
    assert follow is not None and follow.target == "/next" and parser.leftover == b""


def test_response_bodies() -> None:
    response = ResponseParser().feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnot")
    assert response is not None and response.body == b"not" and response.reason == "Not Found"
    for status in (b"204 No Content", b"304 Not Modified", b"100 Continue"):
        parser = ResponseParser()
        response = parser.feed(b"HTTP/1.1 " + status + b"\r\nContent-Length: 3\r\n\r\nxyz")
        assert response is not None and response.body == b"" and parser.leftover == b"xyz"


def test_a_response_body_over_the_limit_is_cut_to_it() -> None:
    parser = ResponseParser(HTTPLimits(max_body_size=4))
    response = parser.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\n0123456789")
    assert response is not None and (response.status, response.body, parser.leftover) == (403, b"0123", b"456789")
    huge = ResponseParser().feed(b"HTTP/1.1 500 Oops\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n")
    assert huge is None  # waits for max_body_size bytes, not for 10**40


def test_response_without_length_or_with_transfer_encoding_leaves_the_body_unread() -> None:
    for head in (b"HTTP/1.0 200 OK\r\n\r\n", b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"):
        parser = ResponseParser()
        response = parser.feed(head + b"3\r\nabc\r\n")
        assert response is not None and response.body == b"" and parser.leftover == b"3\r\nabc\r\n"


def test_response_without_reason_phrase() -> None:
    for line in (b"HTTP/1.1 200\r\n\r\n", b"HTTP/1.1 200 \r\n\r\n"):
        response = ResponseParser().feed(line)
        assert response is not None and response.status == 200 and response.reason == ""


def test_values_are_latin1_and_trimmed() -> None:
    request = RequestParser().feed(b"GET / HTTP/1.1\r\nX-Name: \t caf\xe9 \xa0 \t\r\nX-Empty:\r\n\r\n")
    assert request is not None
    assert request.headers["x-name"] == "caf\xe9 \xa0"
    assert request.headers["x-empty"] == ""


def test_leading_empty_lines_are_ignored() -> None:
    request = RequestParser().feed(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert request is not None and request.target == "/"


def test_identical_duplicate_content_lengths_are_accepted() -> None:
    request = RequestParser().feed(b"POST / HTTP/1.1\r\nContent-Length: 2, 02\r\nContent-Length: 2\r\n\r\nok")
    assert request is not None and request.body == b"ok"


def test_http10_request_is_parsed() -> None:
    request = RequestParser().feed(b"GET / HTTP/1.0\r\n\r\n")
    assert request is not None and request.version == "HTTP/1.0"


SMALL = HTTPLimits(max_line=64, max_headers=4, max_head_size=256, max_body_size=16)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n  X: leading-space\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad(name): v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n: no name\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nName : v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nName\t: v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1\r\n\r\n", 400),
        (b"GET / http/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
        (b"\nGET / HTTP/1.1\r\n\r\n", 400),
        (b"GET /" + b"a" * 64 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /" + b"a" * 200, 414),
        (b"GET / HTTP/1.1\r\nX: " + b"v" * 62 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nX: " + b"v" * 200, 431),
        (b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * 5 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + (b"X: " + b"v" * 57 + b"\r\n") * 4 + b"\r\n", 431),
        (b"\r\n" * 129, 431),
        (b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ],
)
def test_request_errors(data: bytes, status: int) -> None:
    for parser_feed in (RequestParser(SMALL).feed, lambda d: feed_bytewise(RequestParser(SMALL), d)):
        with pytest.raises(HTTPParseError) as info:
            parser_feed(data)
        assert info.value.status == status, info.value


def test_head_size_limit_counts_the_whole_head() -> None:
    limits = HTTPLimits(max_line=64, max_headers=100, max_head_size=100)
    head = b"GET / HTTP/1.1\r\n" + b"X: 0123456789\r\n" * 5  # 91 bytes
    assert RequestParser(limits).feed(head + b"\r\n") is not None  # 93 bytes
    with pytest.raises(HTTPParseError) as info:
        RequestParser(limits).feed(head + b"X: 01234\r\n\r\n")  # 103 bytes
    assert info.value.status == 431


def test_line_exactly_at_the_limit_is_accepted() -> None:
    limits = HTTPLimits(max_line=20)
    line = b"GET /" + b"a" * 6 + b" HTTP/1.1"  # 20 bytes
    field = b"X: " + b"v" * 17  # 20 bytes
    assert feed_bytewise(RequestParser(limits), line + b"\r\n" + field + b"\r\n\r\n") is not None


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 O\x00K\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_response_errors(data: bytes) -> None:
    with pytest.raises(HTTPParseError):
        ResponseParser().feed(data)


def test_a_failed_parser_stays_failed() -> None:
    parser = RequestParser()
    with pytest.raises(HTTPParseError) as first:
        parser.feed(b"GET / HTTP/9.9\r\n")
    with pytest.raises(HTTPParseError) as again:
        parser.feed(b"\r\n")
    assert again.value is first.value
    parser.reset()
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") is not None


def test_state_misuse_is_reported() -> None:
    parser = RequestParser()
    with pytest.raises(InvalidState):
        _ = parser.leftover
    parser.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(InvalidState):
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")


class CountingBuffer(bytearray):
    """A bytearray that tallies how many bytes ``find`` was asked to search."""

    searched = 0

    def find(self, sub: bytes, start: int = 0, *args: int) -> int:  # type: ignore[override]
        CountingBuffer.searched += len(self) - start
        return super().find(sub, start, *args)


def test_bytewise_feeding_only_searches_new_bytes() -> None:
    """White-box guard against quadratic rescans: each byte is searched about once."""
    parser = RequestParser(HTTPLimits(max_line=1 << 17, max_head_size=1 << 17))
    parser._buf = CountingBuffer()  # the buffer reset() just created, instrumented
    CountingBuffer.searched = 0
    data = b"GET / HTTP/1.1\r\nX-Big: " + b"v" * (64 * 1024) + b"\r\n" + b"X: y\r\n" * 50 + b"\r\n"
    request = feed_bytewise(parser, data)
    assert request is not None and len(request.headers["x-big"]) == 64 * 1024
    assert CountingBuffer.searched <= 2 * len(data)


def test_64_kib_fed_one_byte_at_a_time_completes() -> None:
    limits = HTTPLimits(max_line=1 << 17, max_head_size=1 << 18, max_body_size=1 << 16)
    body = bytes(range(256)) * 128  # 32 KiB
    data = b"POST / HTTP/1.1\r\nX: " + b"v" * (32 * 1024) + b"\r\nContent-Length: 32768\r\n\r\n" + body
    request = feed_bytewise(RequestParser(limits), data)
    assert request is not None and request.body == body


# --- Serialization --------------------------------------------------------


def test_serialize_request_adds_length_only_for_a_body() -> None:
    assert serialize_request(Request("GET", "/", Headers([("Host", "h")]))) == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert serialize_request(Request("POST", "/", Headers(), body=b"abc")) == (
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    )


def test_serialize_response_length_rules() -> None:
    assert serialize_response(Response(200, "OK", Headers())) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert serialize_response(Response(101, "Switching Protocols", Headers([("Upgrade", "websocket")]))) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    )
    for status in (100, 204, 304):
        assert b"Content-Length" not in serialize_response(Response(status, "", Headers()))
    stated = Response(200, "OK", Headers([("content-length", "2")]), body=b"hi")
    assert serialize_response(stated) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"


@pytest.mark.parametrize(
    "message",
    [
        Request("GET", "/", Headers([("X", "a\r\nInjected: yes")])),
        Request("GET", "/", Headers([("X", "a\nb")])),
        Request("GET", "/", Headers([("X", "a\rb")])),
        Request("GET", "/", Headers([("X", "a\x00b")])),
        Request("GET", "/", Headers([("X\r\nInjected", "yes")])),
        Request("GET", "/", Headers([("X Y", "v")])),
        Request("GET", "/", Headers([("", "v")])),
        Request("GET", "/", Headers([("X", "\u20ac")])),
        Request("GET", "/a b", Headers()),
        Request("GET", "/\r\nX: y", Headers()),
        Request("", "/", Headers()),
        Request("G T", "/", Headers()),
        Request("GET", "/", Headers(), version="HTTP/2.0"),
        Request("POST", "/", Headers([("Content-Length", "5")]), body=b"abc"),
        Response(200, "OK\r\nX: y", Headers()),
        Response(200, "OK", Headers([("X", "\r\n")])),
        Response(99, "Low", Headers()),
        Response(204, "No Content", Headers(), body=b"x"),
        Response(101, "Switching Protocols", Headers(), body=b"x"),
        Response(200, "OK", Headers([("Content-Length", "1")]), body=b"xy"),
    ],
)
def test_serialization_refuses_what_would_not_parse_back(message: Request | Response) -> None:
    with pytest.raises(ValueError):
        serialize_request(message) if isinstance(message, Request) else serialize_response(message)


# --- Properties -----------------------------------------------------------

TCHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
names = st.text(TCHARS, min_size=1, max_size=20).filter(
    lambda name: name.lower() not in ("content-length", "transfer-encoding")
)
# Visible latin-1 and inner whitespace; the ends are trimmed on parsing, so start and end visible.
value_chars = st.sampled_from([chr(c) for c in (*range(0x21, 0x7F), *range(0x80, 0x100))])
inner_chars = st.one_of(value_chars, st.sampled_from(" \t"))
values = st.one_of(
    st.just(""),
    value_chars,
    st.builds("{}{}{}".format, value_chars, st.text(inner_chars, max_size=30), value_chars),
)
header_lists = st.lists(st.tuples(names, values), max_size=12)
targets = st.text(st.sampled_from([chr(c) for c in range(0x21, 0x7F)]), min_size=1, max_size=40)
versions = st.sampled_from(["HTTP/1.0", "HTTP/1.1"])


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    if draw(st.booleans()):
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed_chunks(parser: RequestParser | ResponseParser, chunks: list[bytes]) -> tuple[Request | Response, bytes]:
    """Feed until the message completes; the chunks after that are more leftover."""
    for index, chunk in enumerate(chunks):
        message = parser.feed(chunk)
        if message is not None:
            return message, parser.leftover + b"".join(chunks[index + 1 :])
    raise AssertionError("message never completed")


@settings(max_examples=200)
@given(
    method=st.text(TCHARS, min_size=1, max_size=10),
    target=targets,
    headers=header_lists,
    version=versions,
    body=st.binary(max_size=64),
    leftover=st.binary(max_size=64),
    data=st.data(),
)
def test_request_round_trip(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    version: str,
    body: bytes,
    leftover: bytes,
    data: st.DataObject,
) -> None:
    request = Request(method, target, Headers(headers), version, body)
    wire = serialize_request(request)
    parsed, rest = feed_chunks(RequestParser(), data.draw(chunked(wire + leftover)))
    assert isinstance(parsed, Request)
    assert (parsed.method, parsed.target, parsed.version, parsed.body) == (method, target, version, body)
    assert list(parsed.headers.items())[: len(headers)] == headers
    assert rest == leftover


@settings(max_examples=200)
@given(
    status=st.integers(100, 599),
    reason=st.text(inner_chars, max_size=20).map(lambda r: r.strip(" \t")),
    headers=header_lists,
    version=versions,
    body=st.binary(max_size=64),
    leftover=st.binary(max_size=64),
    data=st.data(),
)
def test_response_round_trip(
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    version: str,
    body: bytes,
    leftover: bytes,
    data: st.DataObject,
) -> None:
    if 100 <= status < 200 or status in (204, 304):
        body = b""
    response = Response(status, reason, Headers(headers), version, body)
    wire = serialize_response(response)
    parsed, rest = feed_chunks(ResponseParser(), data.draw(chunked(wire + leftover)))
    assert isinstance(parsed, Response)
    assert (parsed.status, parsed.reason, parsed.version, parsed.body) == (status, reason, version, body)
    assert list(parsed.headers.items())[: len(headers)] == headers
    assert rest == leftover


garbage_prefixes = st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"POST / HTTP/1.1\r\nA: b"])


@settings(max_examples=300)
@given(prefix=garbage_prefixes, noise=st.binary(max_size=400), data=st.data())
def test_garbage_only_ever_raises_http_parse_error(prefix: bytes, noise: bytes, data: st.DataObject) -> None:
    limits = HTTPLimits(max_line=100, max_headers=8, max_head_size=300, max_body_size=50)
    for parser in (RequestParser(limits), ResponseParser(limits)):
        try:
            for chunk in data.draw(chunked(prefix + noise)):
                if parser.feed(chunk) is not None:
                    break
        except HTTPParseError as exc:
            assert 400 <= exc.status <= 599
