"""The envelope and the retry schedule the Redis backends share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsstack.hub import Backoff
from wsstack.hub.wire import check_message, decode_envelope, encode_envelope


@given(st.one_of(st.text(), st.binary()))
def test_envelope_round_trip_keeps_text_and_binary_apart(message: str | bytes) -> None:
    decoded = decode_envelope(encode_envelope(message))
    assert decoded == message and type(decoded) is type(message)


@given(st.binary())
def test_decoding_rejects_what_encoding_cannot_make(data: bytes) -> None:
    if data[:1] in (b"t", b"b"):
        try:
            decode_envelope(data)
        except UnicodeDecodeError:
            assert data[:1] == b"t"
    else:
        with pytest.raises(ValueError, match="not a hub envelope"):
            decode_envelope(data)


def test_check_message_takes_bytes_like_and_refuses_the_rest() -> None:
    assert check_message(bytearray(b"ab")) == b"ab" and type(check_message(memoryview(b"ab"))) is bytes
    with pytest.raises(TypeError, match="not int"):
        check_message(3)


@given(st.integers(0, 10_000), st.floats(0, 1))
def test_backoff_grows_to_its_cap_within_its_jitter(attempt: int, rand: float) -> None:
    backoff = Backoff(initial=0.1, maximum=3.0, factor=2.0, jitter=0.5)
    base = min(3.0, 0.1 * 2.0 ** min(attempt, 64))
    assert base * 0.5 <= backoff.delay(attempt, lambda: rand) <= base
    assert backoff.delay(0, lambda: 0.0) == 0.1 and backoff.delay(50, lambda: 0.0) == 3.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": 0}, "initial"),
        ({"initial": 5, "maximum": 1}, "initial"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 2}, "jitter"),
    ],
)
def test_backoff_refuses_impossible_schedules(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)
