"""The fan-out of one process: messages a backend hands over in one turn of the loop, one write per subscriber."""

from __future__ import annotations

import asyncio

from hub_rooms import Recorder
from wsstack.hub.local import LocalTopics


def messages_of(recorder: Recorder) -> list[tuple[object, ...]]:
    return [frames.messages for frames in recorder.frames]


def test_messages_of_one_turn_reach_each_subscriber_in_one_write_in_order() -> None:
    async def main() -> None:
        local = LocalTopics()
        first, second = Recorder(), Recorder()
        for ws in (first, second):
            local.add(ws, "room")
        for message in ("a", b"b", "c"):
            local.deliver_soon("room", message)
        assert first.frames == [] and second.frames == []  # nothing before the turn ends
        await asyncio.sleep(0)
        assert messages_of(first) == messages_of(second) == [("a", b"b", "c")]
        assert first.frames[0] is second.frames[0]  # encoded once for both

    asyncio.run(main())


def test_the_subscribers_are_those_of_when_each_message_came() -> None:
    async def main() -> None:
        local = LocalTopics()
        early, late, leaving = Recorder(), Recorder(), Recorder()
        local.add(early, "room")
        local.add(leaving, "room")
        local.deliver_soon("room", "1")
        local.add(late, "room")
        local.deliver_soon("room", "2")
        local.remove(leaving, "room")
        local.deliver_soon("room", "3")
        local.deliver_soon("elsewhere", "nobody")  # a topic without subscribers here
        local.deliver_soon("room", "4")
        await asyncio.sleep(0)
        assert [m for f in early.frames for m in f.messages] == ["1", "2", "3", "4"]
        assert [m for f in late.frames for m in f.messages] == ["2", "3", "4"]
        assert [m for f in leaving.frames for m in f.messages] == ["1", "2"]

    asyncio.run(main())


def test_a_message_written_at_once_comes_after_those_still_waiting() -> None:
    async def main() -> None:
        local = LocalTopics()
        ws = Recorder()
        local.add(ws, "room")
        local.deliver_soon("room", "from the backend")
        assert local.deliver("room", "now") == 1  # as publish() does when Redis is away
        await asyncio.sleep(0)
        assert messages_of(ws) == [("from the backend",), ("now",)]

    asyncio.run(main())


def test_topics_interleaved_in_one_turn_keep_their_order_per_subscriber() -> None:
    async def main() -> None:
        local = LocalTopics()
        both = Recorder()
        local.add(both, "a")
        local.add(both, "b")
        for topic, message in (("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3")):
            local.deliver_soon(topic, message)
        await asyncio.sleep(0)
        assert messages_of(both) == [("a1", "a2"), ("b1",), ("a3",)]

    asyncio.run(main())
