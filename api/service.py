"""What the API does, as plain functions over ports: submit a job, find one, open its result.

Routes (api/routes/) only turn HTTP into these calls and ApiErrors into problems; the unit tests
call them with in-memory adapters (tests/unit/test_service.py).
"""

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from api import errors
from api.job_index import add_entry, index_keys, remove_from_index
from api.uploads import parse_choice, parse_output_format, safe_filename, sniff_image
from common import amqp
from common.clients import Client
from common.egress import EgressPolicy, UnsafeTarget
from common.formats import COLOR_POLICIES, METADATA_POLICIES
from common.jobs import JobRecord, JobStatus, JobStore, OriginalInfo, original_key, publish_event
from common.messages import ResultInfo, is_job_id
from common.operations import Crop, Operation, OperationsError, Resize, Watermark, parse_operations
from common.ports import MessagePublisher, ObjectStorage
from common.settings import UploadLimits
from common.storage import StorageError
from common.topology import JOBS_EXCHANGE, JOBS_ROUTING_KEY
from common.variants import Variant, VariantsError, default_variant, is_variant_name, parse_variants

logger = logging.getLogger("api")

RETRY_AFTER_UNAVAILABLE_S = 5
RETRY_AFTER_QUEUE_FULL_S = 30

# The index entries of a job being submitted are written while its record is.
_INDEX_WRITES = ThreadPoolExecutor(max_workers=8, thread_name_prefix="api-index")


@dataclass(frozen=True)
class Upload:
    """A job as a client asked for it: the file and the form's fields, unchecked."""

    client: Client
    file: BinaryIO
    size: int
    filename: str | None
    operations: str | None = None
    output_format: str | None = None
    quality: int | None = None
    callback_url: str | None = None
    color: str | None = None
    metadata: str | None = None
    max_bytes: int | None = None
    variants: str | None = None
    preset: str | None = None


@dataclass
class JobsPorts:
    store: ObjectStorage
    jobs: JobStore
    publisher: MessagePublisher
    egress: EgressPolicy
    limits: UploadLimits
    # The operator's presets (api/presets.py), checked when the API started.
    presets: Mapping[str, list[Variant]] = field(default_factory=dict)


def submit_job(upload: Upload, ports: JobsPorts) -> JobRecord:
    """Check everything, store the original and the record, queue the job; or leave nothing."""
    limits = ports.limits
    if upload.size > limits.max_upload_bytes:
        raise errors.UploadTooLarge(
            f"upload too large: {upload.size} bytes; files up to {limits.max_upload_bytes} bytes are accepted",
            field="file",
        )
    variants, field_name = _requested_variants(upload, limits, ports.presets)
    for variant in variants:
        _in_variant(variant, field_name, check_variant, variant, limits)
    color = parse_choice(upload.color, "color", COLOR_POLICIES)
    metadata = parse_choice(upload.metadata, "metadata", METADATA_POLICIES)
    callback_url = None
    if upload.callback_url:
        try:
            callback_url = ports.egress.check_url(upload.callback_url)
        except UnsafeTarget as exc:
            raise errors.InvalidInput(f"callback_url is refused: {exc}", field="callback_url") from None
    image = sniff_image(upload.file, upload.size, limits.max_image_pixels)
    for variant in variants:
        _in_variant(variant, field_name, _check_crops, variant.operations, image.upright_sizes)

    job_id = uuid.uuid4().hex
    first = variants[0]
    record = JobRecord.queued(
        job_id=job_id,
        operations=first.operations,
        output_format=first.output_format,
        quality=first.quality,
        variants=variants,
        preset=upload.preset if field_name == "preset" else None,
        color=color,
        metadata=metadata,
        max_bytes=upload.max_bytes,
        callback_url=callback_url,
        owner=upload.client.name,
        original=OriginalInfo(
            key=original_key(job_id), filename=safe_filename(upload.filename), content_type=image.content_type,
            format=image.format, width=image.width, height=image.height, bytes=upload.size,
        ),
    )
    # The original before the record: a record never claims an original that is not there.
    try:
        ports.store.put_file(record.original.key, upload.file, upload.size, image.content_type, {"job-id": job_id})
    except StorageError as exc:
        raise unavailable("object storage", exc, ", the job was not queued") from exc
    try:
        _store_record(ports, record)
    except StorageError as exc:
        _forget(ports, record)
        raise unavailable("object storage", exc, ", the job was not queued") from exc
    try:
        ports.publisher.publish(
            JOBS_EXCHANGE, JOBS_ROUTING_KEY, record.to_message().model_dump_json().encode(), message_id=job_id
        )
    except amqp.QueueFull as exc:
        _forget(ports, record)
        logger.warning("refused: the work queue is full (%s)", exc, extra={"job_id": job_id})
        raise errors.QueueFull(
            f"the job queue is full ({limits.max_queued_jobs} jobs waiting); the job was not queued, try again later",
            retry_after_s=RETRY_AFTER_QUEUE_FULL_S,
        ) from exc
    except amqp.PublishFailed as exc:
        _forget(ports, record)
        raise unavailable("the message broker", exc, ", the job was not queued") from exc
    logger.info(
        "queued %s %dx%d (%d bytes) for %s",
        image.format, image.width, image.height, upload.size,
        "; ".join(f"{v.name}: {','.join(op.name for op in v.operations)}" for v in variants), extra={"job_id": job_id},
    )
    return record


def _requested_variants(
    upload: Upload, limits: UploadLimits, presets: Mapping[str, list[Variant]]
) -> tuple[list[Variant], str]:
    """What the job is to make, and the field that said so: `preset`, `variants`, or `operations`
    (with output_format and quality) for the one `default` variant."""
    given = [name for name in ("preset", "variants", "operations") if getattr(upload, name) is not None]
    if len(given) > 1:
        raise errors.InvalidInput(f"{' and '.join(given)} cannot be combined: send one of them", field=given[0])
    if given and (upload.output_format is not None or upload.quality is not None) and given[0] != "operations":
        raise errors.InvalidInput(
            f"output_format and quality go inside each variant when {given[0]} is given", field=given[0]
        )
    if upload.preset is not None:
        preset = presets.get(upload.preset)
        if preset is None:
            raise errors.InvalidInput(
                f"no preset {upload.preset[:64]!r}; available: {', '.join(sorted(presets)) or 'none'}", field="preset"
            )
        return preset, "preset"
    if upload.variants is not None:
        try:
            variants = parse_variants(
                upload.variants, limits.max_variants, limits.max_operations, limits.default_quality
            )
        except VariantsError as exc:
            raise errors.InvalidInput(f"variants: {exc}", field="variants") from None
        return variants, "variants"
    try:
        operations = parse_operations(upload.operations or limits.default_operations, limits.max_operations)
    except OperationsError as exc:
        raise errors.InvalidInput(f"operations: {exc}", field="operations") from exc
    output_format = parse_output_format(upload.output_format)
    return [default_variant(operations, output_format, upload.quality or limits.default_quality)], "operations"


def check_variant(variant: Variant, limits: UploadLimits) -> None:
    """What can be judged of a variant before the image is read: its enlargements and its logos."""
    _check_output_size(variant.operations, limits.max_output_pixels)
    _check_logos(variant.operations, limits.logos)


def _in_variant(variant: Variant, field_name: str, check: Callable[..., None], *args: Any) -> None:
    """Run a check on one variant; a problem found in a named variant names it (and the field)."""
    if field_name == "operations":
        check(*args)
        return
    try:
        check(*args)
    except errors.InvalidInput as exc:
        raise errors.InvalidInput(f"{field_name}: variant {variant.name}: {exc.detail}", field=field_name) from None


def announce(record: JobRecord, publisher: MessagePublisher) -> None:
    """Tells the live streams the job's state (queued after an upload or a replay); best effort:
    a stream that misses it reads the record when it opens."""
    try:
        publish_event(publisher, record)
    except amqp.PublishFailed as exc:
        logger.warning("status %s not announced: %s", record.status.value, exc, extra={"job_id": record.job_id})


def find_job(job_id: str, client: Client, jobs: JobStore) -> JobRecord:
    """The job, if it exists and the client may see it; another client's job does not exist."""
    not_found = errors.NotFound(f"no job {job_id[:64]!r}")
    if not is_job_id(job_id):
        raise not_found
    try:
        record = jobs.get(job_id)
    except StorageError as exc:
        raise unavailable("object storage", exc) from exc
    if record is None or not client.may_see(record.owner):
        raise not_found
    return record


def open_result(
    job_id: str, client: Client, jobs: JobStore, store: ObjectStorage, variant: str | None = None
) -> tuple[ResultInfo, Iterator[bytes]]:
    """The completed job's result (the first variant's, or the one named) and its bytes (see stream_object)."""
    if variant is not None and not is_variant_name(variant):
        raise errors.NotFound(f"no variant {variant[:64]!r}: variant names are 1 to 32 of a-z, 0-9, '-' and '_'")
    record = find_job(job_id, client, jobs)
    if record.status is not JobStatus.COMPLETED or record.result is None:
        detail = f"job {job_id} is {record.status}"
        if record.error:
            detail += f": {record.error}"
        raise errors.NotFinished(detail)
    result: ResultInfo | None = record.result if variant is None else record.variant_result(variant)
    if result is None:
        names = ", ".join(output.name for output in record.outputs)
        raise errors.NotFound(f"job {job_id} has no variant {variant!r}; its variants: {names}")
    return result, stream_object(store, result.key)


def stream_object(store: ObjectStorage, key: str) -> Iterator[bytes]:
    """The object's bytes, the first chunk already read (so an unreachable store is a 503 before any
    byte of a 200 has gone out)."""
    try:
        chunks = store.stream(key)
        first = next(chunks, b"")
    except StorageError as exc:
        raise unavailable("object storage", exc) from exc

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    return body()


def _check_output_size(operations: list[Operation], max_output_pixels: int) -> None:
    """An enlargement asked for explicitly is judged now; the worker bounds every other output."""
    for index, operation in enumerate(operations, start=1):
        if isinstance(operation, Resize) and operation.upscale and operation.width and operation.height:
            pixels = operation.width * operation.height
            if pixels > max_output_pixels:
                raise errors.InvalidInput(
                    f"operations: operation {index} (resize) asks for {operation.width}x{operation.height} = "
                    f"{pixels} pixels; outputs are limited to {max_output_pixels} pixels (MAX_OUTPUT_PIXELS)",
                    field="operations",
                )


def _check_logos(operations: list[Operation], logos: frozenset[str]) -> None:
    for index, operation in enumerate(operations, start=1):
        if isinstance(operation, Watermark) and operation.image is not None and operation.image not in logos:
            raise errors.InvalidInput(
                f"operations: operation {index} (watermark): image: no logo preset {operation.image!r}; "
                f"available: {', '.join(sorted(logos)) or 'none'}",
                field="operations",
            )


def _check_crops(operations: list[Operation], sizes: tuple[tuple[int, int], ...]) -> None:
    """A crop box reaching outside the image the operations before it leave is known to fail now,
    when it does so for every size the original may have upright (its EXIF orientation is not
    always known before decoding); the worker fails a job on what only the pixels tell."""
    problems = [_crop_outside(operations, size) for size in sizes]
    if problems and all(problems):
        raise errors.InvalidInput(f"operations: {problems[0]}", field="operations")


def _crop_outside(operations: list[Operation], size: tuple[int, int]) -> str | None:
    """The first crop reaching outside the image, following the image's size from `size` through
    the operations; None if every crop fits."""
    for index, operation in enumerate(operations, start=1):
        problem = operation.outside(size) if isinstance(operation, Crop) else None
        if problem is not None:
            made_by = "" if index == 1 else " operation 1 makes" if index == 2 else f" operations 1–{index - 1} make"
            return f"operation {index} (crop): {problem}" + (f" that{made_by}" if made_by else "")
        size = operation.output_size(size)
    return None


def _store_record(ports: JobsPorts, record: JobRecord) -> None:
    """The record and its two index entries: three small PUTs, made at once (the upload's answer
    waits for one round trip instead of three)."""
    entries = [_INDEX_WRITES.submit(add_entry, ports.store, key) for key in index_keys(record)]
    try:
        ports.jobs.save(record)
    finally:
        wait(entries)
    for entry in entries:
        entry.result()


def _forget(ports: JobsPorts, record: JobRecord) -> None:
    """A job that could not be queued must not be left claiming to be queued."""
    try:
        ports.jobs.delete(record.job_id)
        ports.store.delete(record.original.key)
        remove_from_index(ports.store, record)
    except StorageError:
        logger.exception("could not remove an unqueued job", extra={"job_id": record.job_id})


def unavailable(what: str, exc: Exception, consequence: str = "") -> errors.Unavailable:
    logger.warning("%s unavailable: %s", what, exc)
    return errors.Unavailable(
        f"{what} is unavailable{consequence}; try again later", retry_after_s=RETRY_AFTER_UNAVAILABLE_S
    )
