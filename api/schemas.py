"""Response bodies of the API."""

from datetime import datetime

from pydantic import BaseModel

from common.formats import ColorPolicy, MetadataPolicy, RequestedFormat
from common.jobs import JobStatus, OriginalInfo, Timings, WebhookDelivery
from common.messages import ResultInfo
from common.operations import Operation


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    operations: list[Operation]
    output_format: RequestedFormat | None
    quality: int
    color: ColorPolicy
    metadata: MetadataPolicy
    max_bytes: int | None
    status_url: str
    result_url: str


class ResultWithUrl(ResultInfo):
    download_url: str


class JobStatusResponse(BaseModel):
    job_id: str
    status: JobStatus
    operations: list[Operation]
    output_format: RequestedFormat | None
    quality: int
    color: ColorPolicy
    metadata: MetadataPolicy
    max_bytes: int | None
    callback_url: str | None
    owner: str | None
    original: OriginalInfo
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    worker: str | None
    next_attempt_at: datetime | None
    result: ResultWithUrl | None
    error: str | None
    error_reason: str | None
    webhook: WebhookDelivery | None
    timings: Timings
    revision: int
