"""Job records written only over the version read (S3's `If-Match`), on a real S3 server: the
conditional write itself, and many writers updating one record at once losing none of their changes."""

import threading
import uuid

import pytest

from common.jobs import JobRecord, JobStore, OriginalInfo, original_key
from common.operations import Resize
from harness.objectstore import object_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(s3_endpoint):
    store = object_store(s3_endpoint, "conditional-writes")
    store.ensure_bucket()
    return store


def test_a_write_over_a_stale_version_is_refused_and_changes_nothing(store) -> None:
    key = f"records/{uuid.uuid4().hex}"
    first = store.put(key, b"one", "text/plain")
    data, etag = store.get_tagged(key)
    assert (data, etag) == (b"one", first)

    second = store.replace(key, b"two", "text/plain", etag)
    assert second is not None and second != first
    assert store.get_tagged(key) == (b"two", second)

    assert store.replace(key, b"stale", "text/plain", first) is None
    assert store.get(key) == b"two"


def test_a_conditional_write_of_a_missing_object_creates_nothing(store) -> None:
    key = f"records/{uuid.uuid4().hex}"
    assert store.replace(key, b"ghost", "text/plain", "0" * 32) is None
    assert store.list(key) == []


def test_concurrent_updates_of_one_record_lose_no_change(store) -> None:
    """Eight writers each add their own webhook-like note ten times; a plain read-change-write would
    lose some to the writer that read before them."""
    jobs = JobStore(store)
    job_id = uuid.uuid4().hex
    jobs.save(JobRecord.queued(
        job_id=job_id, operations=[Resize(width=10)], quality=85,
        original=OriginalInfo(key=original_key(job_id), format="jpeg", width=20, height=20, bytes=1),
    ))
    writers, rounds = 8, 10
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(rounds):
                jobs.update(job_id, bump, attempts=200)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    def bump(record: JobRecord) -> bool:
        record.revision += 1
        return True

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    record = jobs.get(job_id)
    assert record is not None and record.revision == 1 + writers * rounds
