"""The Storage page's listing over the in-memory store: scoping, order, cursors, the scan bound."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from api import errors
from api.storage_browser import SCAN_MAX, list_page, open_preview
from common.clients import Client
from common.jobs import JobRecord, JobStore, OriginalInfo, original_key
from common.messages import ResultInfo, VariantResult
from common.operations import Flip
from common.variants import Variant
from tests.support.memory import MemoryObjectStore

ALICE, OPS = Client("alice"), Client("ops", admin=True)
START = datetime(2026, 11, 1, tzinfo=UTC)


def stored(store: MemoryObjectStore, jobs: JobStore, owner: str, at: datetime) -> str:
    job_id = uuid.uuid4().hex
    original = OriginalInfo(key=original_key(job_id), format="jpeg", width=4, height=3, bytes=10)
    jobs.save(JobRecord.queued(job_id=job_id, operations=[], quality=85, owner=owner, original=original))
    store.modified[f"jobs/{job_id}.json"] = at
    return job_id


@pytest.fixture
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


def test_listing_is_the_clients_own_jobs_newest_first(store: MemoryObjectStore) -> None:
    jobs = JobStore(store)  # type: ignore[arg-type]
    alices = [stored(store, jobs, "alice", START + timedelta(minutes=i)) for i in range(3)]
    bobs = stored(store, jobs, "bob", START + timedelta(minutes=10))
    store.put("jobs/not-a-job.json", b"{}", "application/json")  # an odd key: left out, not an error
    assert [job.record.job_id for job in list_page(ALICE, jobs, 10).jobs] == alices[::-1]
    assert [job.record.job_id for job in list_page(OPS, jobs, 10).jobs] == [bobs, *alices[::-1]]


def test_cursor_pages_through_without_repeats(store: MemoryObjectStore) -> None:
    jobs = JobStore(store)  # type: ignore[arg-type]
    made = [stored(store, jobs, "alice", START + timedelta(seconds=i)) for i in range(5)]
    seen, cursor = [], None
    while True:
        page = list_page(ALICE, jobs, 2, cursor)
        seen += [job.record.job_id for job in page.jobs]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == made[::-1]


def test_a_page_reads_at_most_scan_max_records_and_says_where_to_go_on(store: MemoryObjectStore) -> None:
    jobs = JobStore(store)  # type: ignore[arg-type]
    alices = stored(store, jobs, "alice", START)
    for i in range(SCAN_MAX + 5):
        stored(store, jobs, "bob", START + timedelta(seconds=i + 1))
    first = list_page(ALICE, jobs, 10)
    assert first.jobs == [] and first.next_cursor is not None
    second = list_page(ALICE, jobs, 10, first.next_cursor)
    assert [job.record.job_id for job in second.jobs] == [alices] and second.next_cursor is None


@pytest.mark.parametrize("cursor", ["x", "1." + "0" * 31, "1." + "G" * 32, "../../jobs", "9" * 16 + "." + "0" * 32])
def test_a_cursor_not_of_the_apis_form_is_refused(store: MemoryObjectStore, cursor: str) -> None:
    with pytest.raises(errors.InvalidInput):
        list_page(ALICE, JobStore(store), 10, cursor)  # type: ignore[arg-type]


def variants_job(store: MemoryObjectStore, jobs: JobStore) -> str:
    jobs_id = stored(store, jobs, "alice", START)
    record = jobs.get(jobs_id)
    record.variants = [Variant(name="thumb", operations=[Flip()]), Variant(name="big", operations=[Flip()])]
    record.start("w", 1)
    results = [
        VariantResult(name=name, key=f"results/{jobs_id}/{name}.png", width=2, height=2, bytes=len(name),
                      format="png", content_type="image/png")
        for name in ("thumb", "big")
    ]
    record.complete(ResultInfo.model_validate(results[0].model_dump(exclude={"name"})), results)
    jobs.save(record)
    for result in results:
        store.put(result.key, result.name.encode(), "image/png")
    return jobs_id


def test_the_result_preview_of_a_variants_job_is_its_first_variant(store: MemoryObjectStore) -> None:
    jobs = JobStore(store)
    job_id = variants_job(store, jobs)
    stored_object, body = open_preview(job_id, "result", ALICE, jobs, store)
    assert b"".join(body) == b"thumb" and stored_object.bytes == len("thumb")


def test_every_variant_is_listed_and_previewed_by_name(store: MemoryObjectStore) -> None:
    jobs = JobStore(store)
    job_id = variants_job(store, jobs)
    (listed,) = list_page(ALICE, jobs, 10).jobs
    assert [(obj.kind, obj.variant) for obj in listed.objects] == [
        ("original", None), ("result", "thumb"), ("result", "big")
    ]
    stored_object, body = open_preview(job_id, "result", ALICE, jobs, store, "big")
    assert b"".join(body) == b"big" and stored_object.variant == "big"


@pytest.mark.parametrize("kind, variant", [
    ("result", "nope"), ("result", "../../jobs"), ("result", "BIG"), ("result", "a" * 33), ("original", "thumb"),
])
def test_a_variant_the_job_does_not_have_is_not_found(store: MemoryObjectStore, kind: str, variant: str) -> None:
    jobs = JobStore(store)
    job_id = variants_job(store, jobs)
    with pytest.raises(errors.NotFound):
        open_preview(job_id, kind, ALICE, jobs, store, variant)
    with pytest.raises(errors.NotFound):
        open_preview(job_id, "result", Client("bob"), jobs, store, "big")
