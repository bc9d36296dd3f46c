"""Upload, status and result: HTTP in, a service call, HTTP out."""

from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    Form,
    Header,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api import idempotency, service
from api.auth import CurrentClient
from api.dependencies import Services, ServicesDep
from api.events import MAX_WAIT_S
from api.idempotency import raw_form
from api.problems import documented
from api.routes.events import wait_for_change
from api.schemas import JobAccepted, JobStatusResponse, ResultWithUrl, VariantResultWithUrl
from common.formats import CONTENT_TYPES, MAX_MAX_BYTES, MIN_MAX_BYTES, OUTPUT_FORMATS
from common.jobs import JobRecord

router = APIRouter(tags=["jobs"])

_JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/job_id"}}
    for name, operation in (("status", "job_status"), ("result", "job_result"))
}


@router.post(
    "/upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    operation_id="upload",
    responses={202: {"links": _JOB_LINKS}, **documented(401, 409, 413, 415, 422, 429, 503)},
)
def upload(
    request: Request,
    services: ServicesDep,
    client: CurrentClient,
    response: Response,
    background: BackgroundTasks,
    file: Annotated[UploadFile, File(description="The image: JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIC")],
    operations: Annotated[
        str | None,
        Form(
            description='e.g. "resize,watermark" or "resize(width=800,fit=cover),filter(name=blur,radius=2)"'
            " or a JSON array"
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        Form(description="jpeg, png, webp, avif, gif or auto (AVIF, or WebP for an animation); default: the input's"),
    ] = None,
    quality: Annotated[int | None, Form(ge=1, le=100)] = None,
    color: Annotated[
        str | None,
        Form(description="srgb (default: converted to sRGB from the embedded profile) or keep (the profile kept)"),
    ] = None,
    metadata: Annotated[
        str | None,
        Form(
            description="strip (default: no EXIF, GPS, XMP, IPTC or comments), keep (EXIF and XMP), "
            "copyright (EXIF Artist and Copyright only)"
        ),
    ] = None,
    max_bytes: Annotated[
        int | None,
        Form(
            ge=MIN_MAX_BYTES, le=MAX_MAX_BYTES, description="the highest quality whose result fits in this many bytes"
        ),
    ] = None,
    callback_url: Annotated[
        str | None,
        Form(description="public http(s) URL called with the completion event, signed (Standard Webhooks)"),
    ] = None,
    variants: Annotated[
        str | None,
        Form(
            description='named outputs from one decode, a JSON object: {"thumb": {"operations": "resize(width=200)",'
            ' "output_format": "webp", "quality": 80}, ...}; instead of operations, output_format and quality'
        ),
    ] = None,
    preset: Annotated[
        str | None, Form(description="the name of an operator's preset (GET /presets): its variants")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER, min_length=1, max_length=idempotency.KEY_MAX_LENGTH,
            pattern=idempotency.KEY_PATTERN,
            description="the same key with the same request within IDEMPOTENCY_TTL_S answers the first job again",
        ),
    ] = None,
    form: Annotated[FormData | None, Depends(raw_form)] = None,
) -> JobAccepted | JSONResponse:
    claim = None
    if idempotency_key is not None and form is not None:
        begun = idempotency.begin(services.store, client, idempotency_key, form, services.limits.idempotency_ttl_s)
        if isinstance(begun, idempotency.Answer):
            return idempotency.replay(begun)
        claim = begun
    with idempotency.released_on_error(claim):
        record = service.submit_job(
            service.Upload(
                client=client, file=file.file, size=file.size or 0, filename=file.filename,
                operations=operations, output_format=output_format, quality=quality, callback_url=callback_url,
                color=color, metadata=metadata, max_bytes=max_bytes, variants=variants, preset=preset,
            ),
            services.jobs_ports,
        )
    request.state.accepted_operations = [op.name for variant in record.outputs for op in variant.operations]
    # After the answer: the live streams learn of the job without the upload waiting for the broker.
    background.add_task(service.announce, record, services.publisher)
    public_url = services.public_url
    status_url = f"{public_url}/status/{record.job_id}"
    response.headers["Location"] = status_url
    accepted = JobAccepted(
        job_id=record.job_id,
        status=record.status,
        operations=record.operations,
        output_format=record.output_format,
        quality=record.quality,
        color=record.color,
        metadata=record.metadata,
        max_bytes=record.max_bytes,
        variants=record.outputs,
        preset=record.preset,
        status_url=status_url,
        result_url=f"{public_url}/result/{record.job_id}",
    )
    if claim is not None:
        claim.complete(idempotency.Answer(status_code=202, body=accepted.model_dump(mode="json"), location=status_url))
    return accepted


@router.get(
    "/status/{job_id}", response_model=JobStatusResponse, operation_id="job_status",
    responses=documented(401, 404, 422, 429, 503),
)
async def job_status(
    job_id: str,
    request: Request,
    services: ServicesDep,
    client: CurrentClient,
    wait: Annotated[
        float | None,
        Query(ge=0, le=MAX_WAIT_S, description="wait up to this many seconds for the status to change (long poll)"),
    ] = None,
) -> JobStatusResponse:
    if wait:
        record = await wait_for_change(request, client, job_id, wait, services)
    else:
        record = await run_in_threadpool(service.find_job, job_id, client, services.jobs)
    return status_response(record, services)


def status_response(record: JobRecord, services: Services) -> JobStatusResponse:
    result = None
    if record.result is not None:
        result = ResultWithUrl(
            **record.result.model_dump(), download_url=services.store.presigned_url(record.result.key)
        )
    results = [
        VariantResultWithUrl(**variant.model_dump(), download_url=services.store.presigned_url(variant.key))
        for variant in record.results
    ]
    return JobStatusResponse(
        **record.model_dump(exclude={"result", "results", "variants"}),
        variants=record.outputs, result=result, results=results,
    )


_RESULT_RESPONSES = {
    200: {"content": {CONTENT_TYPES[name]: {} for name in OUTPUT_FORMATS}, "description": "the processed image"},
    **documented(401, 404, 409, 503),
}


@router.get(
    "/result/{job_id}", response_class=StreamingResponse, operation_id="job_result", responses=_RESULT_RESPONSES
)
def job_result(job_id: str, services: ServicesDep, client: CurrentClient) -> StreamingResponse:
    """The job's result: its first (usually only) variant."""
    return _stream_result(job_id, None, services, client)


@router.get(
    "/result/{job_id}/{variant}",
    response_class=StreamingResponse,
    operation_id="job_variant_result",
    responses=_RESULT_RESPONSES,
)
def job_variant_result(job_id: str, variant: str, services: ServicesDep, client: CurrentClient) -> StreamingResponse:
    """One variant's result, by the name the upload (or its preset) gave it."""
    return _stream_result(job_id, variant, services, client)


def _stream_result(job_id: str, variant: str | None, services: ServicesDep, client: CurrentClient) -> StreamingResponse:
    result, body = service.open_result(job_id, client, services.jobs, services.store, variant)
    extension = result.key.rsplit(".", 1)[-1]
    filename = job_id if variant is None else f"{job_id}-{variant}"
    return StreamingResponse(
        body,
        media_type=result.content_type,
        headers={
            "Content-Length": str(result.bytes),
            "Content-Disposition": f'inline; filename="{filename}.{extension}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
