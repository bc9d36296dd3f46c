"""The API's event hub and stream bounds, without a broker: who gets which event, and when a
stream is refused or told it fell behind."""

import asyncio

import pytest

from api.errors import RateLimited
from api.events import SUBSCRIBER_BUFFER, EventHub, FeedState, StreamSlots
from common.messages import JobEvent

JOB_A, JOB_B = "a" * 32, "b" * 32


def event(job_id: str, revision: int, status: str = "processing") -> JobEvent:
    return JobEvent(event=f"job.{status}", job_id=job_id, status=status, revision=revision)


def named(signal: JobEvent | FeedState) -> tuple[str, int] | str:
    return signal.state if isinstance(signal, FeedState) else (signal.job_id, signal.revision)


def test_hub_gives_a_job_stream_its_job_only_and_the_everything_stream_all() -> None:
    async def scenario() -> tuple[list, list, int]:
        hub = EventHub(asyncio.get_running_loop())
        with hub.subscribe(JOB_A) as one, hub.subscribe(None) as every:
            hub.deliver(event(JOB_B, 1))
            hub.deliver(event(JOB_A, 2))
            hub.feed_changed(FeedState("lost"))
            await asyncio.sleep(0)
            got_one = [await one.next() for _ in range(2)]
            got_every = [await every.next() for _ in range(3)]
        return got_one, got_every, hub.subscriptions

    got_one, got_every, left = asyncio.run(scenario())
    assert [named(s) for s in got_one] == [(JOB_A, 2), "lost"]
    assert [named(s) for s in got_every] == [(JOB_B, 1), (JOB_A, 2), "lost"]
    assert left == 0


def test_hub_marks_a_stream_that_falls_behind_and_remembers_recent_events() -> None:
    async def scenario() -> tuple[bool, int]:
        hub = EventHub(asyncio.get_running_loop())
        with hub.subscribe(JOB_A) as slow:
            for revision in range(SUBSCRIBER_BUFFER + 1):
                hub.deliver(event(JOB_A, revision))
            await asyncio.sleep(0)
            return slow.overflowed, len(hub.recent)

    overflowed, remembered = asyncio.run(scenario())
    assert overflowed and remembered == SUBSCRIBER_BUFFER + 1


def test_stream_slots_refuse_past_the_limit_per_client_and_come_back() -> None:
    slots = StreamSlots(limit=2)
    slots.acquire("client:alice")
    slots.acquire("client:alice")
    slots.acquire("client:bob")
    with pytest.raises(RateLimited, match="at most 2 per client"):
        slots.acquire("client:alice")
    slots.release("client:alice")
    slots.acquire("client:alice")
