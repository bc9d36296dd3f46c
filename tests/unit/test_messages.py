"""Message schemas: what a worker accepts off the queue, and job records' derived fields."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from common.jobs import JobRecord, JobStatus, OriginalInfo, result_key
from common.messages import JobEvent, JobMessage, utcnow
from common.operations import Flip, Resize, Watermark
from common.variants import MAX_VARIANTS_BOUND, Variant

JOB_ID = "0123456789abcdef0123456789abcdef"


def record(**changes) -> JobRecord:
    fields = {
        "job_id": JOB_ID,
        "status": JobStatus.QUEUED,
        "operations": [Resize(width=100), Watermark()],
        "quality": 85,
        "original": OriginalInfo(key=f"originals/{JOB_ID}", format="jpeg", width=10, height=10, bytes=100),
    }
    return JobRecord(**{**fields, **changes})


def test_job_message_round_trips_through_json() -> None:
    message = record().to_message()
    assert JobMessage.model_validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"{}",
        b'{"job_id": "../../etc", "original_key": "x", "operations": [{"name": "resize"}], '
        b'"submitted_at": "2026-01-01T00:00:00Z"}',
        b'{"job_id": "0123456789abcdef0123456789abcdef", "original_key": "x", "operations": [], '
        b'"submitted_at": "2026-01-01T00:00:00Z"}',
        b'{"job_id": "0123456789abcdef0123456789abcdef", "original_key": "x", "operations": [{"name": "melt"}], '
        b'"submitted_at": "2026-01-01T00:00:00Z"}',
        b'{"job_id": "0123456789abcdef0123456789abcdef", "original_key": "x", "operations": [{"name": "resize"}], '
        b'"quality": 500, "submitted_at": "2026-01-01T00:00:00Z"}',
    ],
)
def test_job_message_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(ValidationError):
        JobMessage.model_validate_json(body)


def test_job_record_timings_derive_from_timestamps() -> None:
    created = utcnow()
    job = record(
        created_at=created,
        started_at=created + timedelta(milliseconds=250),
        finished_at=created + timedelta(milliseconds=1000),
    )
    assert job.timings.queue_wait_ms == 250.0
    assert job.timings.processing_ms == 750.0
    assert job.timings.total_ms == 1000.0


def test_job_record_timings_are_empty_until_started() -> None:
    assert record().timings.model_dump() == {"queue_wait_ms": None, "processing_ms": None, "total_ms": None}


def test_job_record_json_round_trip_excludes_computed_timings() -> None:
    job = record(status=JobStatus.PROCESSING, started_at=utcnow())
    stored = job.model_dump_json(exclude={"timings"})
    assert "timings" not in stored
    assert JobRecord.model_validate_json(stored) == job


def test_result_key_uses_the_usual_extension() -> None:
    assert result_key(JOB_ID, "jpeg") == f"results/{JOB_ID}.jpg"
    assert result_key(JOB_ID, "webp") == f"results/{JOB_ID}.webp"


def test_job_event_needs_a_known_event_name() -> None:
    with pytest.raises(ValidationError):
        JobEvent(event="job.exploded", job_id=JOB_ID, status="failed")


def test_a_job_message_carries_each_variant_name_once_and_a_bounded_number() -> None:
    base = {
        "job_id": JOB_ID, "original_key": f"originals/{JOB_ID}", "operations": [Flip()],
        "submitted_at": "2026-01-01T00:00:00Z",
    }
    twice = [Variant(name="a", operations=[Flip()]), Variant(name="a", operations=[Flip()])]
    with pytest.raises(ValidationError, match="each variant name may appear once"):
        JobMessage.model_validate({**base, "variants": twice})
    many = [Variant(name=f"v{i}", operations=[Flip()]) for i in range(MAX_VARIANTS_BOUND + 1)]
    with pytest.raises(ValidationError, match="at most 100 items"):
        JobMessage.model_validate({**base, "variants": many})
    with pytest.raises(ValidationError, match="should match pattern"):
        JobMessage.model_validate({**base, "variants": [{"name": "../x", "operations": [{"name": "flip"}]}]})
