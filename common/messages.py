"""What travels over RabbitMQ: the job message (API → worker) and job events (worker → notifier)."""

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.formats import (
    MAX_MAX_BYTES,
    MIN_MAX_BYTES,
    ColorPolicy,
    MetadataPolicy,
    OutputFormat,
    RequestedFormat,
)
from common.operations import Operation
from common.variants import MAX_VARIANTS_BOUND, VARIANT_NAME_PATTERN, Variant


class Header:
    """The headers the services put on messages, and read back. (`x-death` and `x-first-death-*`
    are the broker's own, added when it dead-letters a message.)"""

    # On a job coming back from a retry delay queue: the attempt it comes back for.
    RETRY_ATTEMPT = "x-retry-attempt"
    LAST_ERROR = "x-last-error"
    # On a dead letter: why it failed, how many attempts were made, when, where, which job.
    FAILURE_REASON = "x-failure-reason"
    FAILURE_ERROR = "x-failure-error"
    ATTEMPTS_MADE = "x-attempts"
    FAILED_AT = "x-failed-at"
    WORKER = "x-worker"
    JOB_ID = "x-job-id"
    REPLAYED_AT = "x-replayed-at"
    BROKER_DEATHS = "x-death"
    # On a job event coming back to the notifier: the delivery attempt, and how often it waited.
    WEBHOOK_ATTEMPT = "x-webhook-attempt"
    WEBHOOK_DEFERRALS = "x-webhook-deferrals"

    # What a replayed message starts again without.
    FAILURE_HEADERS = (
        RETRY_ATTEMPT, LAST_ERROR, FAILURE_REASON, FAILURE_ERROR, ATTEMPTS_MADE, FAILED_AT, WORKER,
        BROKER_DEATHS, "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-delivery-count",
    )


# A job id is uuid4().hex: also what keeps ids from ever being paths in storage keys.
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def is_job_id(value: str) -> bool:
    return JOB_ID_PATTERN.fullmatch(value) is not None


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobMessage(BaseModel):
    """Everything a worker needs to run a job, so it never has to read the job record first."""

    model_config = ConfigDict(extra="ignore")

    schema_version: Literal[1] = 1
    job_id: str = Field(pattern=JOB_ID_PATTERN.pattern)
    original_key: str
    operations: list[Operation] = Field(min_length=1)
    output_format: RequestedFormat | None = None
    quality: int = Field(85, ge=1, le=100)
    # Every output to make (a message from before variants: none, the fields above are the one);
    # at most MAX_VARIANTS' own bound, each name once.
    variants: list[Variant] = Field([], max_length=MAX_VARIANTS_BOUND)
    color: ColorPolicy = "srgb"
    metadata: MetadataPolicy = "strip"
    max_bytes: int | None = Field(None, ge=MIN_MAX_BYTES, le=MAX_MAX_BYTES)
    callback_url: str | None = None
    submitted_at: datetime

    @field_validator("variants")
    @classmethod
    def _names_once(cls, variants: list[Variant]) -> list[Variant]:
        names = [variant.name for variant in variants]
        if len(set(names)) != len(names):
            raise ValueError("each variant name may appear once")
        return variants


class ResultInfo(BaseModel):
    key: str
    width: int
    height: int
    bytes: int
    format: OutputFormat
    content_type: str


class VariantResult(ResultInfo):
    """One variant's stored output."""

    name: str = Field(pattern=VARIANT_NAME_PATTERN.pattern)


JobStatusName = Literal["queued", "processing", "retrying", "completed", "failed", "cancelled"]
FINAL_STATUSES: tuple[JobStatusName, ...] = ("completed", "failed", "cancelled")
JobEventName = Literal[
    "job.queued", "job.processing", "job.retrying", "job.completed", "job.failed", "job.cancelled"
]


class JobEvent(BaseModel):
    """A job's status changed. Published on the events exchange with the routing key
    `common.topology.event_routing_key(status)`: `job.completed` / `job.failed` (the notifier's),
    `progress.<status>` for the others (the API's live streams only). `revision` orders one job's
    events: a later change has a larger one."""

    event: JobEventName
    job_id: str = Field(pattern=JOB_ID_PATTERN.pattern)
    status: JobStatusName
    revision: int = Field(0, ge=0)
    occurred_at: datetime = Field(default_factory=utcnow)
    worker: str | None = None
    attempts: int = 0
    result: ResultInfo | None = None
    # job.completed: every variant's result (the first is `result`).
    results: list[VariantResult] = []
    error: str | None = None
    error_reason: str | None = None
    next_attempt_at: datetime | None = None
    # Whether the job has a callback URL. The notifier reads the record, where the URL and its
    # secret are, only when this is true; an event without the field (an older worker's) says true.
    # A forged `false` sends nothing and suppresses nothing: the worker's own event still comes.
    webhook: bool = True

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES
