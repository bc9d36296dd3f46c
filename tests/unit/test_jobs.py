"""The job record changes its own state, and refuses changes its state does not allow."""

import re
from datetime import UTC, datetime

import pytest

from common.jobs import IllegalTransition, JobRecord, JobStatus, OriginalInfo, ResultInfo, WebhookDelivery

RESULT = ResultInfo(key="results/x.jpg", width=1, height=1, bytes=1, format="jpeg", content_type="image/jpeg")


def job() -> JobRecord:
    return JobRecord.queued(
        job_id="0" * 32, operations=[], quality=85,
        original=OriginalInfo(key="originals/" + "0" * 32, format="jpeg", width=1, height=1, bytes=1),
    )


def test_a_job_runs_queued_to_processing_to_completed() -> None:
    record = job()
    record.start("w1", 1)
    assert (record.status, record.worker, record.attempts) == (JobStatus.PROCESSING, "w1", 1)
    record.complete(RESULT)
    assert record.status is JobStatus.COMPLETED and record.finished and record.result == RESULT
    assert record.timings.total_ms is not None


def test_a_retried_job_runs_again_and_a_replayed_one_starts_afresh() -> None:
    record = job()
    record.start("w1", 1)
    record.schedule_retry(datetime.now(UTC), "storage down")
    assert record.status is JobStatus.RETRYING and record.error == "storage down"
    record.start("w2", 2)
    record.fail("truncated", "image data is truncated", "w2")
    assert (record.status, record.error_reason) == (JobStatus.FAILED, "truncated")
    record.reset()
    assert (record.status, record.attempts, record.error, record.started_at) == (JobStatus.QUEUED, 0, None, None)


def test_a_job_whose_worker_died_may_start_again() -> None:
    record = job()
    record.start("w1", 1)
    record.start("w2", 2)
    assert (record.worker, record.attempts) == ("w2", 2)


@pytest.mark.parametrize(
    ("prepare", "change", "message"),
    [
        (["start", "complete"], lambda r: r.start("w", 2), "is completed: it cannot start"),
        (["start", "complete"], lambda r: r.fail("x", "y", "w"), "is completed: it cannot fail"),
        (["start", "complete"], lambda r: r.reset(), "is completed: it cannot reset"),
        ([], lambda r: r.complete(RESULT), "is queued: it cannot complete (only when processing)"),
        (
            [],
            lambda r: r.note_webhook(WebhookDelivery(url="u", event="e", delivered=True, attempts=1)),
            "cannot note webhook",
        ),
        (["start", "fail"], lambda r: r.start("w", 2), "is failed: it cannot start"),
    ],
)
def test_illegal_changes_are_refused_naming_the_state(prepare, change, message) -> None:
    record = job()
    for step in prepare:
        {"start": lambda: record.start("w", 1), "complete": lambda: record.complete(RESULT),
         "fail": lambda: record.fail("x", "y", "w")}[step]()
    before = record.model_copy(deep=True)
    with pytest.raises(IllegalTransition, match=re.escape(message)):
        change(record)
    assert record == before


def test_every_change_raises_the_revision_and_its_event_says_what_the_record_does() -> None:
    record = job()
    revisions = [record.revision]
    record.start("w1", 1)
    revisions.append(record.revision)
    record.schedule_retry(datetime.now(UTC), "storage down")
    revisions.append(record.revision)
    record.start("w1", 2)
    revisions.append(record.revision)
    record.complete(RESULT)
    revisions.append(record.revision)
    assert revisions == [1, 2, 3, 4, 5]
    event = record.to_event()
    assert (event.event, event.status, event.revision, event.final) == ("job.completed", "completed", 5, True)
    assert (event.result, event.attempts, event.worker, event.occurred_at) == (RESULT, 2, "w1", record.finished_at)


def test_a_refused_change_leaves_the_revision_alone() -> None:
    record = job()
    with pytest.raises(IllegalTransition):
        record.complete(RESULT)
    assert record.revision == 1 and not record.to_event().final
