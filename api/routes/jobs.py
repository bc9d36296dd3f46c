"""Upload, status and result endpoints."""

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

from api.dependencies import ServicesDep
from api.schemas import JobAccepted, JobStatusResponse, ResultWithUrl
from api.uploads import parse_output_format, safe_filename, sniff_image
from common.amqp import PublishFailed
from common.jobs import JobRecord, JobStatus, OriginalInfo, original_key
from common.messages import is_job_id
from common.operations import OperationsError, parse_operations
from common.storage import StorageError
from common.topology import JOBS_EXCHANGE, JOBS_ROUTING_KEY

logger = logging.getLogger("api")
router = APIRouter()

_http_url = TypeAdapter(AnyHttpUrl)


def _unavailable(what: str, exc: Exception, consequence: str = "") -> HTTPException:
    logger.warning("%s unavailable: %s", what, exc)
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"{what} is unavailable{consequence}; try again later",
        headers={"Retry-After": "5"},
    )


@router.post("/upload", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def upload(
    services: ServicesDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The image: JPEG, PNG, WebP, GIF, BMP or TIFF")],
    operations: Annotated[
        str | None,
        Form(description='e.g. "resize,watermark" or "resize(width=800,fit=cover),filter(name=blur,radius=2)" or a JSON array'),
    ] = None,
    output_format: Annotated[str | None, Form(description="jpeg, png or webp; default: the input's")] = None,
    quality: Annotated[int | None, Form(ge=1, le=100)] = None,
    callback_url: Annotated[str | None, Form(description="called with the completion event, signed")] = None,
) -> JobAccepted:
    settings = services.settings
    if file.size is not None and file.size > settings.max_upload_bytes:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"upload too large: {file.size} bytes; files up to {settings.max_upload_bytes} bytes are accepted",
        )
    try:
        parsed_operations = parse_operations(operations or settings.default_operations, settings.max_operations)
    except OperationsError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"operations: {exc}") from exc
    chosen_format = parse_output_format(output_format)
    if callback_url:
        try:
            callback_url = str(_http_url.validate_python(callback_url))
        except ValidationError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, f"callback_url {callback_url!r} is not an http(s) URL"
            ) from exc
    image = sniff_image(file.file, file.size or 0, settings.max_image_pixels)

    job_id = uuid.uuid4().hex
    log = {"extra": {"job_id": job_id}}
    filename = safe_filename(file.filename)
    record = JobRecord(
        job_id=job_id,
        status=JobStatus.QUEUED,
        operations=parsed_operations,
        output_format=chosen_format,
        quality=quality or settings.default_quality,
        callback_url=callback_url,
        original=OriginalInfo(
            key=original_key(job_id),
            filename=filename,
            content_type=image.content_type,
            format=image.format,
            width=image.width,
            height=image.height,
            bytes=file.size or 0,
        ),
    )
    try:
        services.store.put_file(
            record.original.key, file.file, record.original.bytes, image.content_type,
            metadata={"job-id": job_id},
        )
        services.jobs.save(record)
    except StorageError as exc:
        raise _unavailable("object storage", exc, ", the job was not queued") from exc
    try:
        services.publisher.publish(
            JOBS_EXCHANGE, JOBS_ROUTING_KEY, record.to_message().model_dump_json().encode(), message_id=job_id
        )
    except PublishFailed as exc:
        _forget(services, record)
        raise _unavailable("the message broker", exc, ", the job was not queued") from exc

    logger.info(
        "queued %s %dx%d (%d bytes) for %s",
        image.format, image.width, image.height, record.original.bytes,
        ",".join(op.name for op in parsed_operations), **log,
    )
    status_url = f"{settings.api_public_url}/status/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(
        job_id=job_id,
        status=record.status,
        operations=record.operations,
        output_format=record.output_format,
        quality=record.quality,
        status_url=status_url,
        result_url=f"{settings.api_public_url}/result/{job_id}",
    )


def _forget(services: ServicesDep, record: JobRecord) -> None:
    """A job that could not be queued must not be left claiming to be queued."""
    try:
        services.jobs.delete(record.job_id)
        services.store.delete(record.original.key)
    except StorageError:
        logger.exception("could not remove an unqueued job", extra={"job_id": record.job_id})


def _load(services: ServicesDep, job_id: str) -> JobRecord:
    if not is_job_id(job_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    try:
        record = services.jobs.get(job_id)
    except StorageError as exc:
        raise _unavailable("object storage", exc) from exc
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return record


@router.get("/status/{job_id}", response_model=JobStatusResponse)
def job_status(job_id: str, services: ServicesDep) -> JobStatusResponse:
    record = _load(services, job_id)
    body = record.model_dump(exclude={"result"})
    result = None
    if record.result is not None:
        result = ResultWithUrl(
            **record.result.model_dump(), download_url=services.store.presigned_url(record.result.key)
        )
    return JobStatusResponse(**body, result=result)


@router.get(
    "/result/{job_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/*": {}}}, 409: {"description": "the job has not completed"}},
)
def job_result(job_id: str, services: ServicesDep) -> StreamingResponse:
    record = _load(services, job_id)
    if record.status is not JobStatus.COMPLETED or record.result is None:
        detail = f"job {job_id} is {record.status}"
        if record.error:
            detail += f": {record.error}"
        raise HTTPException(status.HTTP_409_CONFLICT, detail)
    result = record.result
    try:
        chunks = services.store.stream(result.key)
        first = next(chunks, b"")
    except StorageError as exc:
        raise _unavailable("object storage", exc) from exc

    def body():
        yield first
        yield from chunks

    extension = result.key.rsplit(".", 1)[-1]
    return StreamingResponse(
        body(),
        media_type=result.content_type,
        headers={
            "Content-Length": str(result.bytes),
            "Content-Disposition": f'inline; filename="{job_id}.{extension}"',
        },
    )
