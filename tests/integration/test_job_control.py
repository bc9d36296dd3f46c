"""Cancelling jobs, idempotent uploads and listing a client's jobs, on real services (issue 14)."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from httpx_sse import connect_sse

from harness.broker import BrokerVhost
from harness.processes import PROJECT_DIR, wait_for
from harness.system import System, build_system
from harness.webhooks import WebhookReceiver

pytestmark = pytest.mark.integration

ALICE, BOB, OPS = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "ops-key-0123456789abcdef"
KEYS = {"API_KEYS": f"alice={ALICE},bob={BOB}", "ADMIN_API_KEYS": f"ops={OPS}", "AUTH_REQUIRED": "true"}
# Several seconds of real work: enough to cancel while a worker is in the middle of it.
SLOW_OPERATIONS = "resize(width=6000,height=4500,fit=fill,upscale=true)," + ",".join(
    ["filter(name=blur,radius=40)"] * 8
) + ",resize(width=600)"
QUICK = "resize(width=32)"


@pytest.fixture(scope="module")
def keyed(s3_endpoint, tmp_path_factory):
    vhost = BrokerVhost().create()
    system = build_system(vhost, s3_endpoint, tmp_path_factory.mktemp("keyed"), workers=("worker-a",), **KEYS)
    yield system
    system.stop()
    vhost.delete()


def accepted(system: System, path, key: str | None = ALICE, **form: str) -> str:
    response = system.upload(path, key=key, operations=form.pop("operations", QUICK), **form)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def cancel(system: System, job_id: str, key: str | None = ALICE, method: str = "DELETE") -> httpx.Response:
    with system.client(key) as client:
        if method == "DELETE":
            return client.delete(f"/jobs/{job_id}")
        return client.post(f"/jobs/{job_id}/cancel")


def results(system: System) -> list[str]:
    return system.store.list("results/")


def upload_with_key(system: System, path, idempotency_key: str, key: str = ALICE, **form: str) -> httpx.Response:
    with system.client(key) as client, open(path, "rb") as handle:
        return client.post(
            "/upload", files={"file": (path.name, handle)}, data={"operations": QUICK, **form},
            headers={"Idempotency-Key": idempotency_key},
        )


# --- cancellation ---------------------------------------------------------------------------------


def test_a_cancelled_queued_job_is_never_processed(make_system, sample_jpg) -> None:
    receiver = WebhookReceiver()
    try:
        system = make_system(workers=())
        job_id = accepted(system, sample_jpg, key=None, callback_url=receiver.url())
        first = cancel(system, job_id, key=None)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "cancelled"
        again = cancel(system, job_id, key=None, method="POST")
        assert again.status_code == 200
        assert again.json()["revision"] == first.json()["revision"]
        call = wait_for(lambda: next(iter(receiver.calls_for(job_id)), None), 30, "the job.cancelled webhook")
        assert call.payload["type"] == "job.cancelled"

        system.start_worker("worker-a")
        wait_for(lambda: system.vhost.message_count("images.jobs.work") == 0, 30, "the message to be taken")
        wait_for(lambda: "acking without running it" in system.logs(), 30, "the worker to ack the cancelled job")
        status = system.status(job_id)
        assert status["status"] == "cancelled"
        assert status["attempts"] == 0 and status["started_at"] is None
        assert results(system) == []
        assert system.vhost.message_count("images.jobs.dead") == 0
        assert len(receiver.calls_for(job_id)) == 1, "a second cancel sends no second webhook"
    finally:
        receiver.close()


def test_live_streams_and_long_polls_end_at_cancelled(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False)
    job_id = accepted(system, sample_jpg, key=None)
    timeout = httpx.Timeout(10, read=60)
    with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=system.api_url, timeout=timeout) as http:

        def follow() -> list[str]:
            with connect_sse(http, "GET", f"/jobs/{job_id}/events") as source:
                return [event.event for event in source.iter_sse()]

        streamed = pool.submit(follow)
        waited = pool.submit(http.get, f"/status/{job_id}", params={"wait": "50"})
        wait_for(lambda: "queued" in system.logs() and streamed.running() and waited.running(), 10, "both to wait")
        assert cancel(system, job_id, key=None).status_code == 200
        assert streamed.result(timeout=60)[-1] == "cancelled"
        assert waited.result(timeout=60).json()["status"] == "cancelled"


def test_a_processing_job_is_stopped_and_stores_nothing(make_system, sample_jpg) -> None:
    system = make_system(workers=("worker-a",), notifier=False)
    job_id = accepted(system, sample_jpg, key=None, operations=SLOW_OPERATIONS)
    wait_for(lambda: system.status(job_id)["status"] == "processing", 30, "the job to start")
    response = cancel(system, job_id, key=None)
    assert response.status_code == 200, response.text
    wait_for(lambda: "cancelled while processing" in system.logs(), 30, "the worker to stop the job")
    status = system.status(job_id)
    assert status["status"] == "cancelled" and status["result"] is None
    assert results(system) == []
    assert system.vhost.message_count("images.jobs.dead") == 0
    # The image process was killed; the next job gets a fresh one.
    follow_up = accepted(system, sample_jpg, key=None)
    assert system.wait_finished(follow_up)["status"] == "completed"
    # Counted once the worker's statistics are next written.
    wait_for(lambda: system.http.get("/stats").json()["jobs"]["cancelled"] == 1, 30, "/stats to count it")
    assert "imgpipe_jobs_cancelled_total 1.0" in system.http.get("/metrics").text


def test_a_finished_job_cannot_be_cancelled_and_others_jobs_are_not_found(keyed, sample_jpg) -> None:
    job_id = accepted(keyed, sample_jpg)
    assert keyed.wait_finished(job_id, key=ALICE)["status"] == "completed"
    for method in ("DELETE", "POST"):
        refused = cancel(keyed, job_id, method=method)
        assert refused.status_code == 409
        assert refused.json()["type"].endswith("already-finished")
        assert "completed" in refused.json()["detail"]
    assert keyed.status(job_id, key=ALICE)["status"] == "completed"

    queued_or_running = accepted(keyed, sample_jpg, operations=SLOW_OPERATIONS)
    assert cancel(keyed, queued_or_running, key=BOB).status_code == 404
    for forged in ("../jobs/x", "0" * 31 + "G", "x" * 300):
        assert cancel(keyed, forged).status_code in (404, 405)
    assert cancel(keyed, "0123456789abcdef0123456789abcdef").status_code == 404
    assert cancel(keyed, queued_or_running, key=OPS).status_code == 200  # operators may cancel any job
    assert keyed.wait_finished(queued_or_running, key=ALICE)["status"] == "cancelled"


# --- idempotent uploads ---------------------------------------------------------------------------


def originals(system: System) -> list[str]:
    return system.store.list("originals/")


def test_a_retried_upload_with_the_same_key_makes_one_job(keyed, sample_jpg) -> None:
    before = len(originals(keyed))
    first = upload_with_key(keyed, sample_jpg, "order-1001-photo")
    second = upload_with_key(keyed, sample_jpg, "order-1001-photo")
    assert first.status_code == second.status_code == 202, second.text
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Location"] == first.headers["Location"]
    assert len(originals(keyed)) == before + 1
    # Another client's key is its own: the same key makes bob a job of his.
    bobs = upload_with_key(keyed, sample_jpg, "order-1001-photo", key=BOB)
    assert bobs.status_code == 202 and bobs.json()["job_id"] != first.json()["job_id"]


def test_ten_concurrent_duplicates_make_one_job(keyed, sample_jpg) -> None:
    before = len(originals(keyed))
    answers: list[httpx.Response] = []
    start = threading.Barrier(10)

    def send() -> None:
        start.wait()
        answers.append(upload_with_key(keyed, sample_jpg, "concurrent-key-1"))

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [202] * 10, [a.text for a in answers]
    assert len({answer.json()["job_id"] for answer in answers}) == 1
    assert sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in answers) == 9
    assert len(originals(keyed)) == before + 1


def test_a_key_reused_for_another_request_is_refused(keyed, sample_jpg, tmp_path) -> None:
    assert upload_with_key(keyed, sample_jpg, "reused-key").status_code == 202
    other_fields = upload_with_key(keyed, sample_jpg, "reused-key", operations="resize(width=33)")
    assert other_fields.status_code == 422
    assert other_fields.json()["field"] == "Idempotency-Key"
    assert "another request" in other_fields.json()["detail"]
    other_file = tmp_path / sample_jpg.name
    other_file.write_bytes(sample_jpg.read_bytes() + b"\0")
    assert upload_with_key(keyed, other_file, "reused-key").status_code == 422


@pytest.mark.parametrize(
    ("header", "problem"),
    [("k" * 256, "at most 255"), ("", "at least 1"), ("tab\tkey", "pattern"), (b"caf\xc3\xa9", "pattern")],
)
def test_bad_keys_are_refused(keyed, sample_jpg, header, problem) -> None:
    before = len(originals(keyed))
    with keyed.client(ALICE) as client, open(sample_jpg, "rb") as handle:
        response = client.post(
            "/upload", files={"file": ("a.jpg", handle)}, data={"operations": QUICK},
            headers=[(b"Idempotency-Key", header if isinstance(header, bytes) else header.encode())],
        )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("Idempotency-Key") and problem in response.json()["detail"]
    assert len(originals(keyed)) == before


def test_a_refused_upload_gives_its_key_back(keyed, sample_jpg) -> None:
    refused = upload_with_key(keyed, sample_jpg, "fix-and-retry", operations="explode")
    assert refused.status_code == 422 and refused.json()["field"] == "operations"
    assert upload_with_key(keyed, sample_jpg, "fix-and-retry").status_code == 202


# --- listing --------------------------------------------------------------------------------------


def list_jobs(system: System, key: str | None = ALICE, **params: str | int) -> httpx.Response:
    with system.client(key) as client:
        return client.get("/jobs", params=params)


def test_listing_pages_through_fifty_jobs_newest_first(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False, **KEYS)
    made = [accepted(system, sample_jpg) for _ in range(50)]
    bobs = accepted(system, sample_jpg, key=BOB)
    seen: list[dict] = []
    cursor = None
    while True:
        page = list_jobs(system, limit=7, **({"cursor": cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        seen += page.json()["jobs"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    ids = [job["job_id"] for job in seen]
    assert len(ids) == len(set(ids)) == 50
    assert set(ids) == set(made) and bobs not in ids
    created = [job["created_at"] for job in seen]
    assert created == sorted(created, reverse=True)

    assert [job["job_id"] for job in list_jobs(system, key=BOB).json()["jobs"]] == [bobs]
    everyone = list_jobs(system, key=OPS, limit=100).json()["jobs"]
    assert len(everyone) == 51

    assert cancel(system, made[0]).status_code == 200
    cancelled = list_jobs(system, status="cancelled").json()["jobs"]
    assert [job["job_id"] for job in cancelled] == [made[0]]
    assert len(list_jobs(system, status="queued", limit=100).json()["jobs"]) == 49

    # A cursor from alice's pages, used by bob, stays in bob's own index: his one job is newer than
    # the cursor's, so nothing is after it, and none of alice's jobs shows.
    alices_cursor = list_jobs(system, limit=1).json()["next_cursor"]
    assert list_jobs(system, key=BOB, cursor=alices_cursor).json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "many"}, "limit"),
        ({"status": "done"}, "status"), ({"status": "x" * 40}, "status"),
        ({"cursor": "../jobs/"}, "cursor"), ({"cursor": "99999999999999-" + "0" * 31 + "/"}, "cursor"),
        ({"cursor": "x" * 65}, "cursor"),
    ],
)
def test_bad_listing_parameters_are_refused(keyed, params, field) -> None:
    response = list_jobs(keyed, **params)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_listing_needs_a_key_where_keys_are_required(keyed) -> None:
    assert list_jobs(keyed, key=None).status_code == 401


def test_jobs_stored_before_the_index_are_indexed_by_the_reindex_command(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False, **KEYS)
    made = [accepted(system, sample_jpg) for _ in range(3)]
    for key in system.store.list("index/"):
        if made[0] in key or made[1] in key:  # as if uploaded before the index existed
            system.store.delete(key)
    assert [job["job_id"] for job in list_jobs(system).json()["jobs"]] == [made[2]]

    def reindex() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "api.job_index"], env={**os.environ, **system.env}, cwd=PROJECT_DIR,
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "indexed 2 jobs" in reindex()
    assert [job["job_id"] for job in list_jobs(system).json()["jobs"]] == made[::-1]
    assert len(list_jobs(system, key=OPS).json()["jobs"]) == 3
    assert "indexed 0 jobs" in reindex()
    assert len(system.store.list("index/")) == 6
