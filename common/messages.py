"""What travels over RabbitMQ: the job message (API → worker) and job events (worker → notifier)."""

import re
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.formats import OutputFormat
from common.operations import Operation


# A job id is uuid4().hex: also what keeps ids from ever being paths in storage keys.
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def is_job_id(value: str) -> bool:
    return JOB_ID_PATTERN.fullmatch(value) is not None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class JobMessage(BaseModel):
    """Everything a worker needs to run a job, so it never has to read the job record first."""

    model_config = ConfigDict(extra="ignore")

    schema_version: Literal[1] = 1
    job_id: str = Field(pattern=JOB_ID_PATTERN.pattern)
    original_key: str
    operations: list[Operation] = Field(min_length=1)
    output_format: OutputFormat | None = None
    quality: int = Field(85, ge=1, le=100)
    callback_url: str | None = None
    submitted_at: datetime


class ResultInfo(BaseModel):
    key: str
    width: int
    height: int
    bytes: int
    format: OutputFormat
    content_type: str


class JobEvent(BaseModel):
    """Published on the events exchange with routing key `event` (job.completed / job.failed)."""

    event: Literal["job.completed", "job.failed"]
    job_id: str
    status: Literal["completed", "failed"]
    occurred_at: datetime = Field(default_factory=utcnow)
    worker: str | None = None
    attempts: int = 0
    result: ResultInfo | None = None
    error: str | None = None
