"""Job records: the shared, durable state behind GET /status, kept as JSON objects in the bucket.

The API writes a record when it accepts an upload; workers update it as the job runs. Every API
replica reads the same record, and records survive restarts because they live in object storage.
"""

import threading
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, computed_field

from common.formats import MAX_MAX_BYTES, MIN_MAX_BYTES, ColorPolicy, MetadataPolicy, RequestedFormat
from common.messages import JobEvent, JobEventName, JobMessage, ResultInfo, VariantResult, is_job_id, utcnow
from common.operations import Operation
from common.ports import MessagePublisher, ObjectStorage
from common.storage import ObjectMissing, StorageUnavailable
from common.topology import EVENTS_EXCHANGE, event_routing_key
from common.variants import DEFAULT_VARIANT, Variant, default_variant


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_EVENT_NAMES: dict[JobStatus, JobEventName] = {
    JobStatus.QUEUED: "job.queued",
    JobStatus.PROCESSING: "job.processing",
    JobStatus.RETRYING: "job.retrying",
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}
FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class IllegalTransition(ValueError):
    """A change the job's state does not allow (e.g. a completed job started again)."""


class RecordContended(StorageUnavailable):
    """Other writes kept changing a record between the read and the write of an update."""


class OriginalInfo(BaseModel):
    key: str
    filename: str | None = None
    content_type: str | None = None
    format: str
    width: int
    height: int
    bytes: int


class WebhookDelivery(BaseModel):
    """What became of the job's callback: written by the notification service. Why a delivery
    failed (refused, unreachable, an error status) is in the notifier's log only: telling them
    apart here would make the API a port scanner."""

    url: str
    event: str
    message_id: str | None = None
    delivered: bool
    attempts: int
    error: str | None = None
    at: datetime = Field(default_factory=utcnow)


class Timings(BaseModel):
    queue_wait_ms: float | None = None
    processing_ms: float | None = None
    total_ms: float | None = None


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 1)


class JobRecord(BaseModel):
    job_id: str
    status: JobStatus
    operations: list[Operation]
    output_format: RequestedFormat | None = None
    quality: int
    color: ColorPolicy = "srgb"
    metadata: MetadataPolicy = "strip"
    max_bytes: int | None = Field(None, ge=MIN_MAX_BYTES, le=MAX_MAX_BYTES)
    callback_url: str | None = None
    # Every output the job makes; `operations`, `output_format` and `quality` above are the first's.
    # (Empty in records written before variants existed: then the one `default` they describe.)
    variants: list[Variant] = []
    # The preset the variants were expanded from (kept as expanded: a later edit rewrites no job).
    preset: str | None = None
    owner: str | None = None  # the client that submitted it (None: anonymous)
    original: OriginalInfo
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    worker: str | None = None
    next_attempt_at: datetime | None = None
    # The first variant's result; `results` has every variant's, in the order they were asked for.
    result: ResultInfo | None = None
    results: list[VariantResult] = []
    error: str | None = None
    error_reason: str | None = None
    webhook: WebhookDelivery | None = None
    # One more on every change of state: orders a job's events (the id of its server-sent events).
    revision: int = 0

    # --- what may happen to a job, each from the states that allow it ----------------------------
    #
    #   queued ──start──▶ processing ──complete──▶ completed
    #     ▲                 │  ▲  │
    #     │    schedule_retry│  │  └──fail──▶ failed ──reset──▶ queued (a dead letter replayed)
    #     │                 ▼  │start
    #     └──── reset ──── retrying
    #
    # queued, processing or retrying ──cancel──▶ cancelled (asked by the client; final)
    #
    # A redelivered job may start again while it says processing (its worker died mid-job).

    @classmethod
    def queued(cls, **fields: Any) -> "JobRecord":
        return cls(status=JobStatus.QUEUED, revision=1, **fields)

    def start(self, worker: str, attempt: int) -> None:
        self._require("start", JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.PROCESSING)
        self.revision += 1
        self.status = JobStatus.PROCESSING
        self.started_at = utcnow()
        self.attempts = attempt
        self.worker = worker
        self.next_attempt_at = None

    def complete(self, result: ResultInfo, results: list[VariantResult] | None = None) -> None:
        """`result` is the first variant's; `results` every variant's (None: `result` is the default's)."""
        self._require("complete", JobStatus.PROCESSING)
        self.revision += 1
        self.status = JobStatus.COMPLETED
        self.result = result
        self.results = results or [VariantResult(name=DEFAULT_VARIANT, **result.model_dump())]
        self.finished_at = utcnow()
        self.error = self.error_reason = None

    def fail(self, reason: str, error: str, worker: str) -> None:
        self._require("fail", JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRYING)
        self.revision += 1
        self.status = JobStatus.FAILED
        self.finished_at = utcnow()
        self.worker = worker
        self.error = error
        self.error_reason = reason
        self.next_attempt_at = None

    def schedule_retry(self, at: datetime, error: str) -> None:
        self._require("schedule_retry", JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRYING)
        self.revision += 1
        self.status = JobStatus.RETRYING
        self.error = error
        self.next_attempt_at = at

    def reset(self) -> None:
        """Back to queued with a clean slate, for another run (a replayed dead letter)."""
        self._require("reset", JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRYING, JobStatus.FAILED)
        self.revision += 1
        self.status = JobStatus.QUEUED
        self.attempts = 0
        self.error = self.error_reason = None
        self.started_at = self.finished_at = self.next_attempt_at = None

    def cancel(self, at: datetime) -> None:
        """Stopped at its client's request; `at` is when it was asked, so the record written by the
        API and the one a worker may write again after a race say the same."""
        self._require("cancel", JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRYING)
        self.revision += 1
        self.status = JobStatus.CANCELLED
        self.finished_at = at
        self.next_attempt_at = None

    def note_webhook(self, delivery: "WebhookDelivery") -> None:
        self._require("note_webhook", *FINAL)
        self.webhook = delivery

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def _require(self, change: str, *allowed: JobStatus) -> None:
        if self.status not in allowed:
            raise IllegalTransition(
                f"job {self.job_id} is {self.status.value}: it cannot {change.replace('_', ' ')} "
                f"(only when {' or '.join(status.value for status in allowed)})"
            )

    def to_event(self) -> JobEvent:
        """The change that brought the job to its present state, as the events exchange carries it."""
        occurred_at = self.finished_at or (self.started_at if self.status is JobStatus.PROCESSING else None)
        return JobEvent(
            event=_EVENT_NAMES[self.status],
            job_id=self.job_id,
            status=self.status.value,
            revision=self.revision,
            occurred_at=occurred_at or utcnow(),
            worker=self.worker,
            attempts=self.attempts,
            result=self.result if self.status is JobStatus.COMPLETED else None,
            results=self.results if self.status is JobStatus.COMPLETED else [],
            error=self.error,
            error_reason=self.error_reason,
            next_attempt_at=self.next_attempt_at,
            webhook=self.callback_url is not None,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def timings(self) -> Timings:
        return Timings(
            queue_wait_ms=_ms(self.created_at, self.started_at),
            processing_ms=_ms(self.started_at, self.finished_at),
            total_ms=_ms(self.created_at, self.finished_at),
        )

    @property
    def outputs(self) -> list[Variant]:
        """The variants the job makes (a record from before variants: its one `default`)."""
        return self.variants or [default_variant(self.operations, self.output_format, self.quality)]

    def variant_result(self, name: str) -> VariantResult | None:
        return next((result for result in self.results if result.name == name), None)

    def to_message(self) -> JobMessage:
        return JobMessage(
            job_id=self.job_id,
            original_key=self.original.key,
            operations=self.operations,
            output_format=self.output_format,
            quality=self.quality,
            variants=self.variants,
            color=self.color,
            metadata=self.metadata,
            max_bytes=self.max_bytes,
            callback_url=self.callback_url,
            submitted_at=self.created_at,
        )


def publish_event(publisher: MessagePublisher, record: JobRecord, cancel: threading.Event | None = None) -> None:
    """Tells every subscriber of job events (the notifier, the API's live streams) the job's state."""
    event = record.to_event()
    publisher.publish(
        EVENTS_EXCHANGE, event_routing_key(event.status), event.model_dump_json().encode(),
        message_id=record.job_id, cancel=cancel,
    )


def original_key(job_id: str) -> str:
    return f"originals/{job_id}"


def result_key(job_id: str, output_format: str, variant: str = DEFAULT_VARIANT) -> str:
    """Where a variant's output is stored: the default variant's is the job's one result key."""
    extension = {"jpeg": "jpg"}.get(output_format, output_format)
    if variant == DEFAULT_VARIANT:
        return f"results/{job_id}.{extension}"
    return f"results/{job_id}/{variant}.{extension}"


_RECORDS_PREFIX = "jobs/"


def _record_key(job_id: str) -> str:
    return f"{_RECORDS_PREFIX}{job_id}.json"


def _record_bytes(record: JobRecord) -> bytes:
    return record.model_dump_json(exclude={"timings"}).encode()


class JobStore:
    """Records are written in two ways: `save` overwrites (a new record, or a change nobody else can
    be making), `replace` only if the record is still the version read (its ETag), so that of two
    changes made at once (a worker completing a job while its client cancels it) exactly one wins."""

    def __init__(self, store: ObjectStorage) -> None:
        self._store = store

    def get(self, job_id: str) -> JobRecord | None:
        found = self.read(job_id)
        return None if found is None else found[0]

    def read(self, job_id: str) -> tuple[JobRecord, str] | None:
        """The record and the ETag of the version read."""
        try:
            data, etag = self._store.get_tagged(_record_key(job_id))
        except ObjectMissing:
            return None
        return JobRecord.model_validate_json(data), etag

    def save(self, record: JobRecord) -> str:
        return self._store.put(_record_key(record.job_id), _record_bytes(record), content_type="application/json")

    def replace(self, record: JobRecord, etag: str) -> str | None:
        """Writes the record if the stored one is still version `etag`: the new ETag, or None if it
        changed (or went) since."""
        return self._store.replace(
            _record_key(record.job_id), _record_bytes(record), content_type="application/json", etag=etag
        )

    def update(self, job_id: str, change: Callable[[JobRecord], bool], attempts: int = 5) -> JobRecord | None:
        """Read, change, write back unless another write came in between (then again, with what it
        wrote). `change` alters the record in place and says whether to write it; the record as it
        stands at the end, or None if there is none."""
        for _ in range(attempts):
            found = self.read(job_id)
            if found is None:
                return None
            record, etag = found
            if not change(record) or self.replace(record, etag) is not None:
                return record
        raise RecordContended(f"the record of job {job_id} kept changing; {attempts} attempts to update it failed")

    def delete(self, job_id: str) -> None:
        self._store.delete(_record_key(job_id))

    def list_dated(self) -> list[tuple[str, datetime | None]]:
        """Every stored job's id with when its record last changed; keys that are not a job's are left out."""
        dated = []
        for key, modified in self._store.list_dated(_RECORDS_PREFIX):
            job_id = key.removeprefix(_RECORDS_PREFIX).removesuffix(".json")
            if key.endswith(".json") and is_job_id(job_id):
                dated.append((job_id, modified))
        return dated
