"""``Options`` and ``HTTPLimits`` refuse an impossible setting when they are made, naming the field.

Before, ``Options(compression_level=42)`` was accepted and failed only at the
first compressing handshake, as a 500 and a server traceback.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from wsstack import Options
from wsstack.options import HTTPLimits

BAD_VALUES: list[tuple[str, Any]] = [
    ("compression_level", 42),
    ("compression_level", -2),
    ("compression_memory_level", 0),
    ("compression_memory_level", 10),
    ("compression_window_bits", 20),
    ("compression_window_bits", 7),
    ("decompression_window_bits", 16),
    ("decompression_window_bits", 0),
    ("compression_threshold", -1),
    ("max_message_size", 0),
    ("max_message_size", -5),
    ("max_frame_size", 0),
    ("max_fragments", 0),
    ("open_timeout", 0),
    ("close_timeout", -1.0),
    ("close_timeout", math.inf),
    ("ping_interval", math.inf),
    ("ping_timeout", math.nan),
    ("max_queue", 0),
    ("write_limit", -1),
    ("subprotocol", ""),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_an_impossible_value_is_a_value_error_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"Options\.{name} must be"):
        Options(**{name: value})


WRONG_TYPES: list[tuple[str, Any]] = [
    ("compression_level", 6.0),
    ("compression_level", "6"),
    ("max_queue", True),
    ("max_message_size", 1.5),
    ("ping_interval", "20"),
    ("close_timeout", False),
    ("enable_compression", 1),
    ("auto_pong", None),
    ("subprotocol", b"chat"),
    ("http_limits", {"max_line": 10}),
]


@pytest.mark.parametrize(("name", "value"), WRONG_TYPES, ids=[f"{n}={v!r}" for n, v in WRONG_TYPES])
def test_a_wrong_type_is_a_type_error_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"Options\.{name} must be"):
        Options(**{name: value})


@pytest.mark.parametrize(
    "settings",
    [
        {"compression_level": -1, "compression_memory_level": 1, "compression_window_bits": 8},
        {"compression_level": 9, "compression_memory_level": 9, "compression_window_bits": 15},
        {"decompression_window_bits": 8, "compression_threshold": 0, "write_limit": 0},
        {"max_message_size": None, "max_frame_size": None, "max_fragments": None, "max_queue": 1},
        {"open_timeout": None, "close_timeout": None, "ping_interval": None, "ping_timeout": None},
        {"open_timeout": 1, "close_timeout": 0.01, "max_message_size": 1, "subprotocol": "chat"},
        # Drop TCP as soon as our close frame is out, without waiting for the peer's (as websockets allows).
        {"close_timeout": 0},
    ],
)
def test_the_edges_of_each_range_are_accepted(settings: dict[str, Any]) -> None:
    options = Options(**settings)
    for name, value in settings.items():
        assert getattr(options, name) == value


@pytest.mark.parametrize("name", ["max_line", "max_headers", "max_head_size"])
def test_http_limits_are_positive(name: str) -> None:
    with pytest.raises(ValueError, match=rf"HTTPLimits\.{name} must be at least 1"):
        HTTPLimits(**{name: 0})
    with pytest.raises(TypeError, match=rf"HTTPLimits\.{name} must be an int"):
        HTTPLimits(**{name: "8192"})


def test_http_limits_allow_no_body() -> None:
    assert HTTPLimits(max_body_size=0).max_body_size == 0
    with pytest.raises(ValueError, match=r"HTTPLimits\.max_body_size"):
        HTTPLimits(max_body_size=-1)


SERVER = Options(max_message_size=50, close_timeout=1.5, ping_interval=None, max_queue=4)


def test_merge_keeps_what_the_route_does_not_set() -> None:
    """A route's ``Options(enable_compression=True)`` changes compression and nothing else."""
    merged = SERVER.merge(Options(enable_compression=True, compression_level=1))
    assert merged == Options(
        max_message_size=50,
        close_timeout=1.5,
        ping_interval=None,
        max_queue=4,
        enable_compression=True,
        compression_level=1,
    )


def test_merge_keywords_apply_last_and_always() -> None:
    """A keyword can set a field back to its default, which a positional ``Options`` cannot say."""
    merged = SERVER.merge(Options(max_queue=8), max_queue=16, max_message_size=1 << 20)
    assert (merged.max_queue, merged.max_message_size, merged.close_timeout) == (16, 1 << 20, 1.5)
    assert SERVER.merge() is SERVER
    assert SERVER.merge(Options()) is SERVER


def test_merge_refuses_what_options_refuse() -> None:
    with pytest.raises(TypeError, match="no field 'compresion_level'"):
        SERVER.merge(compresion_level=1)
    with pytest.raises(ValueError, match=r"Options\.compression_level"):
        SERVER.merge(compression_level=42)
    with pytest.raises(TypeError, match="must be an Options"):
        SERVER.merge({"max_queue": 1})  # type: ignore[arg-type]
