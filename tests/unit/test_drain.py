"""Reading a refused upload's body before answering: to its end, but never past the bound."""

import asyncio

import pytest

from api import limits
from api.limits import drain_body

CHUNK = b"x" * 1000


def scope(**headers: str) -> dict:
    encoded = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "headers": encoded}


class Body:
    """An ASGI receive of `chunks` body messages (endless with None), counting what was read."""

    def __init__(self, chunks: int | None, stall_after: int | None = None) -> None:
        self.chunks, self.stall_after, self.read = chunks, stall_after, 0

    async def __call__(self) -> dict:
        if self.stall_after is not None and self.read >= self.stall_after:
            await asyncio.Event().wait()
        self.read += 1
        more = self.chunks is None or self.read < self.chunks
        return {"type": "http.request", "body": CHUNK, "more_body": more}


def drain(receive: Body, max_bytes: int = 10_000, **headers: str) -> None:
    asyncio.run(drain_body(scope(**headers), receive, max_bytes))


def test_drain_reads_a_body_to_its_end() -> None:
    body = Body(chunks=7)
    drain(body, content_length="7000")
    assert body.read == 7


def test_drain_stops_past_the_bound_of_an_endless_body() -> None:
    body = Body(chunks=None)
    drain(body, max_bytes=10_000)
    assert body.read == 11  # just past 10,000 bytes


def test_drain_reads_nothing_of_a_body_declared_over_the_bound() -> None:
    body = Body(chunks=None)
    drain(body, content_length="10001")
    assert body.read == 0


def test_drain_reads_nothing_the_client_waits_to_send() -> None:
    body = Body(chunks=3)
    drain(body, content_length="3000", expect="100-Continue")
    assert body.read == 0


def test_drain_gives_up_on_a_stalled_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "DRAIN_SECONDS", 0.05)
    body = Body(chunks=None, stall_after=2)
    drain(body)
    assert body.read == 2


def test_drain_stops_when_the_client_goes() -> None:
    async def gone() -> dict:
        return {"type": "http.disconnect"}

    asyncio.run(drain_body(scope(), gone, 10_000))
