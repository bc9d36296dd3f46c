"""Response bodies of the API."""

from datetime import datetime

from pydantic import BaseModel

from common.formats import ColorPolicy, MetadataPolicy, RequestedFormat
from common.jobs import JobStatus, OriginalInfo, Timings, WebhookDelivery
from common.messages import ResultInfo, VariantResult
from common.operations import Operation
from common.variants import Variant


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    operations: list[Operation]
    output_format: RequestedFormat | None
    quality: int
    color: ColorPolicy
    metadata: MetadataPolicy
    max_bytes: int | None
    # Every output the job makes (one, `default`, for an upload with operations only).
    variants: list[Variant]
    preset: str | None
    status_url: str
    result_url: str


class ResultWithUrl(ResultInfo):
    download_url: str


class VariantResultWithUrl(VariantResult):
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
    variants: list[Variant]
    preset: str | None
    callback_url: str | None
    owner: str | None
    original: OriginalInfo
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    worker: str | None
    next_attempt_at: datetime | None
    # The first variant's result; `results` has every variant's.
    result: ResultWithUrl | None
    results: list[VariantResultWithUrl]
    error: str | None
    error_reason: str | None
    webhook: WebhookDelivery | None
    timings: Timings
    revision: int


class PresetsResponse(BaseModel):
    # Preset name -> its variants, as `preset=<name>` on an upload expands to.
    presets: dict[str, list[Variant]]
