"""Upload, status and result endpoints."""

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from api.auth import CurrentClient, can_see
from api.dependencies import ServicesDep
from api.schemas import JobAccepted, JobStatusResponse, ResultWithUrl
from api.uploads import parse_output_format, safe_filename, sniff_image
from common.amqp import PublishFailed, QueueFull
from common.clients import Client
from common.egress import UnsafeTarget
from common.jobs import JobRecord, JobStatus, OriginalInfo, original_key
from common.messages import is_job_id
from common.operations import Operation, OperationsError, Resize, parse_operations
from common.storage import StorageError
from common.topology import JOBS_EXCHANGE, JOBS_ROUTING_KEY

logger = logging.getLogger("api")
router = APIRouter()


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
    client: CurrentClient,
    response: Response,
    file: Annotated[UploadFile, File(description="The image: JPEG, PNG, WebP, GIF, BMP or TIFF")],
    operations: Annotated[
        str | None,
        Form(description='e.g. "resize,watermark" or "resize(width=800,fit=cover),filter(name=blur,radius=2)" or a JSON array'),
    ] = None,
    output_format: Annotated[str | None, Form(description="jpeg, png or webp; default: the input's")] = None,
    quality: Annotated[int | None, Form(ge=1, le=100)] = None,
    callback_url: Annotated[
        str | None,
        Form(description="public http(s) URL called with the completion event, signed (Standard Webhooks)"),
    ] = None,
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
    _check_output_size(parsed_operations, settings.max_output_pixels)
    chosen_format = parse_output_format(output_format)
    if callback_url:
        try:
            callback_url = services.egress.check_url(callback_url)
        except UnsafeTarget as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, f"callback_url is refused: {exc}"
            ) from None
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
        owner=client.name,
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
    except QueueFull as exc:
        _forget(services, record)
        logger.warning("refused: the work queue is full (%s)", exc, **log)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the job queue is full ({settings.max_queued_jobs} jobs waiting); the job was not queued, try again later",
            headers={"Retry-After": "30"},
        ) from exc
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


def _check_output_size(operations: list[Operation], max_output_pixels: int) -> None:
    """An enlargement asked for explicitly is judged now; the worker bounds every other output."""
    for index, operation in enumerate(operations, start=1):
        if isinstance(operation, Resize) and operation.upscale and operation.width and operation.height:
            pixels = operation.width * operation.height
            if pixels > max_output_pixels:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    f"operations: operation {index} (resize) asks for {operation.width}x{operation.height} = "
                    f"{pixels} pixels; outputs are limited to {max_output_pixels} pixels (MAX_OUTPUT_PIXELS)",
                )


def _forget(services: ServicesDep, record: JobRecord) -> None:
    """A job that could not be queued must not be left claiming to be queued."""
    try:
        services.jobs.delete(record.job_id)
        services.store.delete(record.original.key)
    except StorageError:
        logger.exception("could not remove an unqueued job", extra={"job_id": record.job_id})


def _load(services: ServicesDep, client: Client, job_id: str) -> JobRecord:
    """The job, if it exists and belongs to the client; another client's job does not exist."""
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id[:64]!r}")
    if not is_job_id(job_id):
        raise not_found
    try:
        record = services.jobs.get(job_id)
    except StorageError as exc:
        raise _unavailable("object storage", exc) from exc
    if record is None or not can_see(client, record.owner):
        raise not_found
    return record


@router.get("/status/{job_id}", response_model=JobStatusResponse)
def job_status(job_id: str, services: ServicesDep, client: CurrentClient) -> JobStatusResponse:
    record = _load(services, client, job_id)
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
def job_result(job_id: str, services: ServicesDep, client: CurrentClient) -> StreamingResponse:
    record = _load(services, client, job_id)
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
            "X-Content-Type-Options": "nosniff",
        },
    )
