"""Routes, the request context and the origin check, without any transport."""

from __future__ import annotations

from wsstack.http11 import Headers, Request
from wsstack.routing import HTTPResponse, RequestContext, Router, origin_allowed


def make_router() -> Router[str]:
    router: Router[str] = Router()
    router.get("/ws")("ws")
    router.route("/items", ("GET", "POST"))("items")
    router.get("/static/*")("static")
    router.get("/static/special")("special")
    router.get("/static/deep/*")("deep")
    return router


def test_exact_routes_and_methods() -> None:
    router = make_router()
    assert router.resolve("GET", "/ws") == ("ws", None)
    assert router.resolve("POST", "/items")[0] == "items"
    handler, refusal = router.resolve("DELETE", "/items")
    assert handler is None and refusal is not None and refusal.status == 405
    assert refusal.headers["Allow"] == "GET, POST"
    handler, refusal = router.resolve("GET", "/nothing")
    assert handler is None and refusal is not None and refusal.status == 404


def test_prefix_routes_longest_first_and_exact_wins() -> None:
    router = make_router()
    assert router.resolve("GET", "/static/a.css")[0] == "static"
    assert router.resolve("GET", "/static/")[0] == "static"
    assert router.resolve("GET", "/static/special")[0] == "special"
    assert router.resolve("GET", "/static/deep/x/y")[0] == "deep"
    assert router.resolve("GET", "/staticx")[1].status == 404  # type: ignore[union-attr]


def test_catch_all() -> None:
    router: Router[str] = Router()
    router.get("/*")("any")
    assert router.resolve("GET", "/")[0] == "any"
    assert router.resolve("GET", "/a/b?c")[0] == "any"


def test_context_reads_the_request() -> None:
    request = Request(
        "GET",
        "/ws?room=1&room=2",
        Headers(
            [
                ("Upgrade", "websocket"),
                ("Connection", "keep-alive, Upgrade"),
                ("Sec-WebSocket-Protocol", "chat, binary"),
            ]
        ),
    )
    ctx = RequestContext(request)
    assert ctx.path == "/ws" and ctx.query_params == {"room": ["1", "2"]}
    assert ctx.header("upgrade") == "websocket" and ctx.header("missing") is None
    assert ctx.is_websocket_upgrade()
    assert ctx.offered_subprotocols() == ["chat", "binary"]
    ctx.resp().set_status(201)
    ctx.response.set_header("X-A", "1")
    ctx.response.set_header("x-a", "2")
    ctx.response.body = "é"
    response = ctx.response.to_response()
    assert (response.status, response.reason, response.body) == (201, "Created", "é".encode())
    assert response.headers.get_all("X-A") == ["2"]
    assert response.headers["Content-Type"].startswith("text/plain")


def test_query_gives_one_value() -> None:
    """``ctx.query("name")`` is the string the seed's users expect; ``query_params`` keeps the lists."""
    ctx = RequestContext(Request("GET", "/ws?name=alice&tag=a&tag=b&empty=&caf%C3%A9=%C3%A9t%C3%A9", Headers()))
    assert ctx.query("name") == "alice"
    assert ctx.query("tag") == "a" and ctx.query_params["tag"] == ["a", "b"]
    assert ctx.query("empty") == "" and ctx.query("empty", "x") == ""
    assert ctx.query("café") == "été"
    assert ctx.query("missing") is None and ctx.query("missing", "guest") == "guest"


def test_default_response_is_empty_200() -> None:
    response = HTTPResponse().to_response()
    assert (response.status, response.body) == (200, b"")


def test_the_response_is_made_when_first_used_and_can_be_replaced() -> None:
    """An upgraded request's context lives as long as its connection: it holds no response it never uses."""
    ctx = RequestContext(Request("GET", "/", Headers()))
    assert ctx._response is None
    made = ctx.response
    assert ctx.response is made and ctx.resp() is made
    assert (made.status, made.body) == (200, b"")
    ctx.response = HTTPResponse(204)
    assert ctx.response.to_response().status == 204


def test_origin_check() -> None:
    with_origin = Request("GET", "/", Headers([("Origin", "https://a.example")]))
    without = Request("GET", "/", Headers())
    assert origin_allowed(with_origin, None)
    assert origin_allowed(with_origin, ["https://a.example"])
    assert not origin_allowed(with_origin, ["https://b.example"])
    assert origin_allowed(without, ["https://b.example"])


def test_head_goes_to_the_get_handler() -> None:
    router = make_router()
    assert router.resolve("HEAD", "/ws") == ("ws", None)
    assert router.resolve("HEAD", "/static/x")[0] == "static"
