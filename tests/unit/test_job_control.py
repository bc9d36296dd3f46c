"""Cancelling, idempotent uploads and the job listing, decided over in-memory adapters
(tests/integration/test_job_control.py runs the same on real services)."""

import io
from datetime import timedelta
from types import SimpleNamespace

import pytest
from pika.spec import BasicProperties
from PIL import Image
from starlette.datastructures import FormData, Headers, UploadFile

from api import errors, idempotency
from api.cancellation import cancel_job
from api.job_index import add_to_index
from api.listing import list_jobs
from common.amqp import Delivery, Outcome
from common.cancellation import CancelRequest, CancelRequests
from common.clients import Client
from common.jobs import IllegalTransition, JobRecord, JobStatus, JobStore, OriginalInfo, original_key
from common.messages import JobEvent, utcnow
from common.operations import Resize
from common.settings import Settings
from tests.support.memory import InProcessPipeline, MemoryObjectStore, MemoryPublisher
from worker.handler import JobHandler
from worker.stats import WorkerStats

JOB_ID = "0123456789abcdef0123456789abcdef"
ALICE, BOB, OPS = Client("alice"), Client("bob"), Client("ops", admin=True)


def record(job_id: str = JOB_ID, owner: str | None = "alice", **fields: object) -> JobRecord:
    return JobRecord.queued(
        job_id=job_id, operations=[Resize(width=100)], quality=85, owner=owner,
        original=OriginalInfo(key=original_key(job_id), format="jpeg", width=400, height=300, bytes=1),
        **fields,
    )


# --- the transition -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRYING])
def test_a_job_not_yet_finished_may_be_cancelled(status: JobStatus) -> None:
    job = record()
    job.status = status
    at = utcnow()
    job.cancel(at)
    assert (job.status, job.finished_at, job.revision, job.finished) == (JobStatus.CANCELLED, at, 2, True)
    assert job.to_event().event == "job.cancelled"


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_may_not_be_cancelled_or_started(status: JobStatus) -> None:
    job = record()
    job.status = status
    with pytest.raises(IllegalTransition, match="cannot cancel"):
        job.cancel(utcnow())
    if status is JobStatus.CANCELLED:
        with pytest.raises(IllegalTransition, match="cannot start"):
            job.start("w", 1)


# --- the API's cancel -----------------------------------------------------------------------------


@pytest.fixture
def api():
    store, publisher = MemoryObjectStore(), MemoryPublisher()
    jobs = JobStore(store)
    jobs.save(record())
    return SimpleNamespace(store=store, publisher=publisher, jobs=jobs)


def test_cancelling_writes_the_record_then_the_request_and_publishes_once(api) -> None:
    first = cancel_job(JOB_ID, ALICE, api.jobs, api.store, api.publisher)
    again = cancel_job(JOB_ID, ALICE, api.jobs, api.store, api.publisher)
    assert first.status is again.status is JobStatus.CANCELLED
    assert again.revision == first.revision
    request = CancelRequests(api.store).find(JOB_ID)
    assert request is not None and request.requested_at == first.finished_at and request.requested_by == "alice"
    assert [p.routing_key for p in api.publisher.to("images.events")] == ["job.cancelled"]


def test_another_clients_job_is_not_found_and_a_finished_one_conflicts(api) -> None:
    with pytest.raises(errors.NotFound):
        cancel_job(JOB_ID, BOB, api.jobs, api.store, api.publisher)
    done = api.jobs.get(JOB_ID)
    done.status = JobStatus.FAILED
    api.jobs.save(done)
    with pytest.raises(errors.AlreadyFinished, match="is failed"):
        cancel_job(JOB_ID, OPS, api.jobs, api.store, api.publisher)
    assert CancelRequests(api.store).find(JOB_ID) is None


def test_a_cancel_crossing_a_completion_gets_409_and_changes_nothing(api) -> None:
    """The worker completes the job between the API's read of the record and its write: the API's
    write is refused (the record is not the version it read), and on reading again it answers 409."""
    replace = api.jobs.replace

    def complete_first(job: JobRecord, etag: str) -> str | None:
        if job.status is JobStatus.CANCELLED and api.jobs.get(JOB_ID).status is not JobStatus.COMPLETED:
            done = api.jobs.get(JOB_ID)
            done.status = JobStatus.COMPLETED
            api.jobs.save(done)
        return replace(job, etag)

    api.jobs.replace = complete_first
    with pytest.raises(errors.AlreadyFinished, match="is completed"):
        cancel_job(JOB_ID, ALICE, api.jobs, api.store, api.publisher)
    assert api.jobs.get(JOB_ID).status is JobStatus.COMPLETED
    assert CancelRequests(api.store).find(JOB_ID) is None
    assert api.publisher.to("images.events") == []


def test_a_record_that_keeps_changing_is_a_storage_problem_not_a_cancel(api) -> None:
    api.jobs.replace = lambda job, etag: None  # every write finds another one came first
    with pytest.raises(errors.Unavailable):
        cancel_job(JOB_ID, ALICE, api.jobs, api.store, api.publisher)
    assert api.jobs.get(JOB_ID).status is JobStatus.QUEUED


# --- the worker -----------------------------------------------------------------------------------


@pytest.fixture
def worker():
    settings = Settings(_env_file=None)
    store, publisher = MemoryObjectStore(), MemoryPublisher()
    jobs = JobStore(store)
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), "navy").save(buffer, "JPEG")
    store.objects[original_key(JOB_ID)] = buffer.getvalue()
    job = record()
    jobs.save(job)
    stats = WorkerStats("worker-t", store, settings.stats_interval_s)
    pipeline = InProcessPipeline()
    handler = JobHandler(settings.worker, store, jobs, publisher, "worker-t", stats, pipeline)
    body = job.to_message().model_dump_json().encode()
    message = Delivery(body, BasicProperties(message_id=JOB_ID), 1, False, "job", channel=None)
    return SimpleNamespace(handler=handler, store=store, jobs=jobs, publisher=publisher, pipeline=pipeline,
                           message=message, stats=stats)


def test_the_worker_acks_a_cancelled_job_without_work(worker) -> None:
    cancel_job(JOB_ID, ALICE, worker.jobs, worker.store, worker.publisher)
    assert worker.handler(worker.message) is Outcome.ACK
    assert next(worker.pipeline.runs) == 0, "the pipeline never ran"
    assert worker.jobs.get(JOB_ID).status is JobStatus.CANCELLED
    assert worker.store.list_dated("results/") == []
    assert worker.stats.snapshot().cancelled == 1


def test_a_cancel_asked_while_the_job_starts_stops_it_and_rewrites_the_record(worker) -> None:
    """The API cancelled between the worker's read of the record and its `processing` write: the
    cancel request is what the worker goes by, and the record ends cancelled with the request's time."""
    asked = utcnow() - timedelta(seconds=1)
    CancelRequests(worker.store).request(CancelRequest(job_id=JOB_ID, requested_at=asked))
    assert worker.handler(worker.message) is Outcome.ACK
    job = worker.jobs.get(JOB_ID)
    assert (job.status, job.finished_at, job.result) == (JobStatus.CANCELLED, asked, None)
    assert worker.store.list_dated("results/") == []
    events = [JobEvent.model_validate_json(p.body) for p in worker.publisher.to("images.events")]
    assert [event.event for event in events][-1] == "job.cancelled"
    assert worker.publisher.to("images.dlx") == []


def api_cancel_without_request(jobs: JobStore) -> None:
    """What the API's cancel writes first (the record, over the version it read), and nothing else yet."""
    jobs.update(JOB_ID, lambda job: job.cancel(utcnow()) is None)


def assert_cancelled_with_nothing_left(worker) -> None:
    job = worker.jobs.get(JOB_ID)
    assert (job.status, job.result, job.results) == (JobStatus.CANCELLED, None, [])
    assert worker.store.list_dated("results/") == []
    events = [JobEvent.model_validate_json(p.body).event for p in worker.publisher.to("images.events")]
    assert "job.completed" not in events
    assert worker.publisher.to("images.dlx") == []
    assert worker.stats.snapshot().cancelled == 1


def test_a_cancel_landing_before_the_processing_write_wins_over_it(worker) -> None:
    """The API cancels between the worker's read of the record and its `processing` write, and has
    not yet written the cancel request: the worker's write is refused, and it finds the cancel."""
    replace = worker.jobs.replace

    def cancel_first(job: JobRecord, etag: str) -> str | None:
        if job.status is JobStatus.PROCESSING:
            api_cancel_without_request(worker.jobs)
        return replace(job, etag)

    worker.jobs.replace = cancel_first
    assert worker.handler(worker.message) is Outcome.ACK
    assert_cancelled_with_nothing_left(worker)


def test_a_cancel_landing_while_the_image_is_processed_removes_the_stored_results(worker) -> None:
    """The cancel's record write lands after the worker's `processing` write and before its
    `completed` one: the completion is refused, and the results it stored are removed."""
    run_variants = worker.pipeline.run_variants

    def cancel_during(request, cancelled=None):
        processed = run_variants(request, cancelled)
        api_cancel_without_request(worker.jobs)
        return processed

    worker.pipeline.run_variants = cancel_during
    assert worker.handler(worker.message) is Outcome.ACK
    assert_cancelled_with_nothing_left(worker)


def test_a_duplicate_deliverys_write_in_between_is_written_over(worker) -> None:
    """Not every write in between is a cancel: another worker's `processing` write (a redelivered
    copy) is written over, and the job completes as it did before writes were conditional."""
    run_variants = worker.pipeline.run_variants

    def another_worker_starts(request, cancelled=None):
        processed = run_variants(request, cancelled)
        worker.jobs.update(JOB_ID, lambda job: job.start("worker-other", 2) is None)
        return processed

    worker.pipeline.run_variants = another_worker_starts
    assert worker.handler(worker.message) is Outcome.ACK
    assert worker.jobs.get(JOB_ID).status is JobStatus.COMPLETED
    assert len(worker.store.list_dated("results/")) == 1


# --- idempotency ----------------------------------------------------------------------------------


def form(data: bytes = b"image", **fields: str) -> FormData:
    upload = UploadFile(io.BytesIO(data), filename="a.jpg", headers=Headers({"content-type": "image/jpeg"}))
    return FormData([("file", upload), *fields.items()])


def answer(job_id: str = JOB_ID) -> idempotency.Answer:
    return idempotency.Answer(status_code=202, body={"job_id": job_id}, location=f"/status/{job_id}")


def test_the_first_request_claims_the_key_and_a_retry_gets_its_answer() -> None:
    store = MemoryObjectStore()
    claim = idempotency.begin(store, ALICE, "k1", form(operations="resize"), 60)
    assert isinstance(claim, idempotency.Claim)
    claim.complete(answer())
    assert idempotency.begin(store, ALICE, "k1", form(operations="resize"), 60) == answer()
    assert isinstance(idempotency.begin(store, BOB, "k1", form(operations="resize"), 60), idempotency.Claim)


@pytest.mark.parametrize("changed", [form(b"other image", operations="resize"), form(operations="crop")])
def test_the_same_key_for_another_request_is_refused(changed: FormData) -> None:
    store = MemoryObjectStore()
    claim = idempotency.begin(store, ALICE, "k1", form(operations="resize"), 60)
    assert isinstance(claim, idempotency.Claim)
    claim.complete(answer())
    with pytest.raises(errors.InvalidInput, match="another request"):
        idempotency.begin(store, ALICE, "k1", changed, 60)


def test_an_expired_or_released_key_makes_a_new_claim() -> None:
    store = MemoryObjectStore()
    claim = idempotency.begin(store, ALICE, "k1", form(), 60)
    assert isinstance(claim, idempotency.Claim)
    claim.release()
    claim = idempotency.begin(store, ALICE, "k1", form(b"another"), 60)
    assert isinstance(claim, idempotency.Claim)
    claim.record.created_at -= timedelta(seconds=61)
    claim.complete(answer())
    assert isinstance(idempotency.begin(store, ALICE, "k1", form(b"third"), 60), idempotency.Claim)


def test_a_duplicate_of_a_request_in_flight_waits_then_conflicts(monkeypatch) -> None:
    monkeypatch.setattr(idempotency, "IN_FLIGHT_WAIT_S", 0.2)
    store = MemoryObjectStore()
    assert isinstance(idempotency.begin(store, ALICE, "k1", form(), 60), idempotency.Claim)
    with pytest.raises(errors.RequestInFlight):
        idempotency.begin(store, ALICE, "k1", form(), 60)


@pytest.mark.parametrize("key", ["", "x" * 256, "new\nline", "tab\t", "café", "\x00"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(errors.InvalidInput):
        idempotency.check_key(key)
    assert idempotency.check_key("x" * 255) == "x" * 255


# --- listing --------------------------------------------------------------------------------------


def test_listing_pages_newest_first_within_the_callers_own_jobs() -> None:
    store = MemoryObjectStore()
    jobs = JobStore(store)
    start = utcnow()
    made = []
    for number in range(12):
        owner = "alice" if number % 3 else "bob"
        job = record(f"{number:032x}", owner=owner, created_at=start + timedelta(seconds=number))
        jobs.save(job)
        add_to_index(store, job)
        made.append(job)
    alices = [job.job_id for job in reversed(made) if job.owner == "alice"]
    seen, cursor = [], None
    while True:
        page = list_jobs(ALICE, store, jobs, "", 3, cursor=cursor)
        seen += [job.job_id for job in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == alices
    assert len(list_jobs(OPS, store, jobs, "", 100).jobs) == 12
    assert list_jobs(BOB, store, jobs, "", 100, wanted=JobStatus.COMPLETED).jobs == []
    assert len(list_jobs(BOB, store, jobs, "", 100, wanted=JobStatus.QUEUED).jobs) == 4
    for forged in ("../", "index/all/x", "1-2", "99999999999999-" + "g" * 32):
        with pytest.raises(errors.InvalidInput, match="cursor"):
            list_jobs(ALICE, store, jobs, "", 3, cursor=forged)
