"""Live job events on real services: the API learns of changes from the broker and streams them as
Server-Sent Events (`/jobs/{id}/events`, `/events`), and `/status/{id}?wait=S` long-polls."""

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import pytest
from httpx_sse import connect_sse

from api.events import MAX_STREAMS_PER_CLIENT, MAX_WAIT_S
from harness.broker import BrokerVhost
from harness.processes import wait_for
from harness.system import System

pytestmark = pytest.mark.integration

ALICE, BOB, OPS = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "ops-key-0123456789abcdef"
KEYS = {"API_KEYS": f"alice={ALICE},bob={BOB}", "ADMIN_API_KEYS": f"ops={OPS}", "AUTH_REQUIRED": "true"}


@dataclass
class Received:
    id: str
    event: str
    data: dict


def client(system: System, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=system.api_url, headers=headers, timeout=httpx.Timeout(10, read=90))


def follow(system: System, path: str, key: str | None = None, last_event_id: str | None = None) -> list[Received]:
    """Every event of a stream until the server ends it."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    with client(system, key) as http, connect_sse(http, "GET", path, headers=headers) as source:
        source.response.raise_for_status()
        return [Received(e.id, e.event, e.json()) for e in source.iter_sse()]


@contextmanager
def stream(system: System, path: str, key: str | None = None) -> Iterator[Iterator[Received]]:
    """An open stream, read as far as the test wants."""
    with client(system, key) as http, connect_sse(http, "GET", path) as source:
        assert source.response.status_code == 200, source.response.read()
        yield (Received(e.id, e.event, json.loads(e.data) if e.data else {}) for e in source.iter_sse())


def upload(system: System, path, key: str | None = None, **form: str) -> str:
    response = system.upload(path, key=key, operations=form.pop("operations", "resize(width=300)"), **form)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def test_job_stream_follows_the_job_to_completed_and_ends(system: System, sample_jpg) -> None:
    job_id = upload(system, sample_jpg, operations="resize(width=320,height=200,fit=cover)")
    events = follow(system, f"/jobs/{job_id}/events")
    statuses = [e.event for e in events]
    assert statuses[-1] == "completed", statuses
    assert set(statuses) <= {"queued", "processing", "completed"}, statuses
    revisions = [int(e.id) for e in events]
    assert revisions == sorted(set(revisions)), revisions
    final = events[-1].data
    assert (final["job_id"], final["status"], final["revision"]) == (job_id, "completed", revisions[-1])
    assert (final["result"]["width"], final["result"]["height"]) == (320, 200)
    assert httpx.get(final["result"]["download_url"], timeout=10).status_code == 200
    assert final["result_url"].endswith(f"/result/{job_id}")
    assert system.status(job_id)["revision"] == revisions[-1]


def test_twenty_concurrent_jobs_followed_by_their_streams_reach_their_final_state(
    system: System, sample_jpg, corrupted_jpg
) -> None:
    jobs = {
        upload(system, corrupted_jpg if n % 5 == 0 else sample_jpg, operations="resize(width=64)"): n for n in range(20)
    }
    with ThreadPoolExecutor(20) as pool:
        streams = dict(zip(jobs, pool.map(lambda job_id: follow(system, f"/jobs/{job_id}/events"), jobs), strict=True))
    finals = {job_id: events[-1].event for job_id, events in streams.items()}
    expected = {job_id: "failed" if n % 5 == 0 else "completed" for job_id, n in jobs.items()}
    assert finals == expected
    failed = next(events[-1].data for job_id, events in streams.items() if expected[job_id] == "failed")
    assert failed["error_reason"] and failed["error"]


def test_stream_opened_after_the_end_gets_the_final_state_at_once(system: System, sample_jpg) -> None:
    job_id = upload(system, sample_jpg)
    assert system.wait_finished(job_id)["status"] == "completed"
    events = follow(system, f"/jobs/{job_id}/events")
    assert [e.event for e in events] == ["completed"]
    assert events[0].data["result"]["width"] == 300


def test_last_event_id_resumes_after_the_event_named(system: System, sample_jpg) -> None:
    job_id = upload(system, sample_jpg)
    final = system.wait_finished(job_id)
    # The client had every event: nothing more, and the stream ends.
    assert follow(system, f"/jobs/{job_id}/events", last_event_id=str(final["revision"])) == []
    # The client had only the first: it gets the end.
    resumed = follow(system, f"/jobs/{job_id}/events", last_event_id="1")
    assert [(e.event, int(e.id)) for e in resumed] == [("completed", final["revision"])]


@pytest.mark.parametrize("bad", ["abc", "-1", "1" * 40, "1:2", "../../x"])
def test_bad_last_event_id_is_422_naming_the_header(system: System, sample_jpg, bad: str) -> None:
    job_id = upload(system, sample_jpg)
    with client(system) as http:
        response = http.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": bad})
        everything = http.get("/events", headers={"Last-Event-ID": bad})
    for refused in (response, everything):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["field"] == "Last-Event-ID"
        assert refused.json()["detail"].startswith("Last-Event-ID: String should match pattern")


@pytest.mark.parametrize("job_id", ["0123456789abcdef0123456789abcdef", "not-a-job", "..%2F..%2Fetc"])
def test_stream_of_an_unknown_job_is_404(system: System, job_id: str) -> None:
    with client(system) as http:
        response = http.get(f"/jobs/{job_id}/events")
    assert response.status_code == 404
    assert response.json()["type"] == "urn:imgpipe:problem:not-found"


def test_all_events_stream_carries_every_job_and_resumes(system: System, sample_jpg) -> None:
    with stream(system, "/events") as events:
        jobs = {upload(system, sample_jpg) for _ in range(3)}
        seen: list[Received] = []
        for event in events:
            if event.data.get("job_id") in jobs:
                seen.append(event)
            if {e.data["job_id"] for e in seen if e.event == "completed"} == jobs:
                break
    first = seen[0]
    assert first.id == f"{first.data['job_id']}:{first.data['revision']}"
    # Resuming after the first event replays, from this replica's memory, what came after it.
    with stream_after(system, first.id) as replayed_events:
        replayed = []
        for event in replayed_events:
            replayed.append(event.id)
            if event.id == seen[-1].id:
                break
    ours = [e.id for e in seen[1:]]
    assert [i for i in replayed if i in ours] == ours
    # An id it no longer has (or never had): the stream says so first.
    with stream_after(system, f"{'0' * 32}:1") as unknown:
        assert next(unknown).event == "gap"


@contextmanager
def stream_after(system: System, last_event_id: str) -> Iterator[Iterator[Received]]:
    headers = {"Last-Event-ID": last_event_id}
    with client(system) as http, connect_sse(http, "GET", "/events", headers=headers) as source:
        assert source.response.status_code == 200
        yield (Received(e.id, e.event, json.loads(e.data)) for e in source.iter_sse())


def test_too_many_open_streams_per_client_is_429_until_one_closes(system: System) -> None:
    with ExitStack() as open_streams:
        for _ in range(MAX_STREAMS_PER_CLIENT):
            open_streams.enter_context(stream(system, "/events"))
        with client(system) as http:
            refused = http.get("/events")
            assert refused.status_code == 429, refused.text
            assert "too many open event streams" in refused.json()["detail"]
            assert refused.headers["retry-after"]
    # Closed ones are given back.
    wait_for(lambda: _stream_opens(system), 10, "a stream slot to be given back")


def _stream_opens(system: System) -> bool:
    with client(system) as http, http.stream("GET", "/events") as response:
        return response.status_code == 200


@pytest.mark.parametrize("wait", ["1e9", str(MAX_WAIT_S + 1), "-1", "nan", "soon"])
def test_status_wait_out_of_bounds_is_422(system: System, sample_jpg, wait: str) -> None:
    job_id = upload(system, sample_jpg)
    with client(system) as http:
        response = http.get(f"/status/{job_id}", params={"wait": wait})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "wait"


def test_status_wait_returns_when_the_status_changes(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False)
    job_id = upload(system, sample_jpg)
    with client(system) as http:
        # Nothing changes without a worker: the wait ends with the job as it was.
        assert http.get(f"/status/{job_id}", params={"wait": "0.5"}).json()["status"] == "queued"
        waiting = ThreadPoolExecutor(1).submit(http.get, f"/status/{job_id}", params={"wait": str(MAX_WAIT_S)})
        time.sleep(1)  # the poll is waiting (were it not yet, it would still see the change)
        assert not waiting.done()
        system.start_worker("worker-a")
        changed = waiting.result(timeout=MAX_WAIT_S + 10).json()
    assert changed["status"] in ("processing", "completed"), changed


def test_streams_answer_only_the_jobs_owner_and_everything_only_operators(make_system, sample_jpg) -> None:
    system = make_system(workers=("worker-a",), notifier=False, **KEYS)
    job_id = upload(system, sample_jpg, key=ALICE)
    assert [e.event for e in follow(system, f"/jobs/{job_id}/events", key=ALICE)][-1] == "completed"
    with client(system, BOB) as bob, client(system) as nobody, client(system, ALICE) as alice:
        assert bob.get(f"/jobs/{job_id}/events").status_code == 404
        assert nobody.get(f"/jobs/{job_id}/events").status_code == 401
        assert bob.get(f"/status/{job_id}", params={"wait": "1"}).status_code == 404
        assert alice.get("/events").status_code == 403
        assert nobody.get("/events").status_code == 401
    with stream(system, "/events", key=OPS) as events:
        other = upload(system, sample_jpg, key=BOB)
        assert any(e.data.get("job_id") == other and e.event == "completed" for e in events)


@pytest.mark.every_broker
def test_stream_survives_a_broker_restart(make_system, private_broker, sample_jpg) -> None:
    vhost = BrokerVhost(endpoint=private_broker.endpoint).create()
    system = make_system(vhost=vhost, workers=(), notifier=False)
    job_id = upload(system, sample_jpg)
    received: list[Received] = []
    done = threading.Event()

    def read() -> None:
        try:
            with stream(system, f"/jobs/{job_id}/events") as events:
                received.extend(events)
        finally:
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: received, 20, "the job's first event")
    private_broker.stop()
    wait_for(lambda: any(e.event == "feed" for e in received), 30, "the stream to say the broker is lost")
    private_broker.start()
    system.start_worker("worker-a")
    assert done.wait(120), [e.event for e in received]
    statuses = [e.event for e in received]
    assert statuses[0] == "queued" and statuses[-1] == "completed", statuses
    assert received[received.index(next(e for e in received if e.event == "feed"))].data["broker"] == "lost"
