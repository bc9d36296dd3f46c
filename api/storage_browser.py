"""The console's Storage page: a client's stored originals and results, newest first, a page at a
time, with bounded previews.

A client sees only its own jobs' objects (an operator every job's). Keys are made from job ids
(`original_key`, `result_key`), never taken from a request; a preview is the stored object itself,
sent only when it is small and in a format a browser shows: nothing is decoded on request.
"""

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from api import errors
from api.service import find_job, stream_object, unavailable
from common.clients import Client
from common.jobs import JobRecord, JobStore, original_key, result_key
from common.ports import ObjectStorage
from common.storage import StorageError
from common.variants import DEFAULT_VARIANT, is_variant_name

logger = logging.getLogger("api")

PAGE_SIZE_MAX = 100
# Job records read for one page at most: a client with few jobs among many gets a shorter page and a cursor.
SCAN_MAX = 500
PREVIEW_MAX_BYTES = 2 * 1024 * 1024
PREVIEW_MAX_PIXELS = 16_000_000
PREVIEW_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "avif", "bmp"})
ObjectKind = Literal["original", "result"]
CURSOR_PATTERN = r"^(\d{1,15})\.([0-9a-f]{32})$"


class StoredObject(BaseModel):
    kind: ObjectKind
    variant: str | None = None  # a result's variant (`default` for a job of plain operations)
    format: str
    content_type: str
    width: int
    height: int
    bytes: int

    @property
    def previewable(self) -> bool:
        return (
            self.format in PREVIEW_FORMATS
            and self.bytes <= PREVIEW_MAX_BYTES
            and self.width * self.height <= PREVIEW_MAX_PIXELS
        )


@dataclass(frozen=True)
class StoredJob:
    record: JobRecord
    stored_at: datetime | None
    objects: list[StoredObject]


@dataclass(frozen=True)
class Page:
    jobs: list[StoredJob]
    next_cursor: str | None


def stored_objects(record: JobRecord) -> list[StoredObject]:
    original = record.original
    objects = [
        StoredObject(
            kind="original", content_type=original.content_type or "application/octet-stream",
            **original.model_dump(include={"format", "width", "height", "bytes"}),
        )
    ]
    fields = {"format", "content_type", "width", "height", "bytes"}
    for result in record.results:
        objects.append(StoredObject(kind="result", variant=result.name, **result.model_dump(include=fields)))
    if not record.results and record.result is not None:  # a record from before variants
        objects.append(StoredObject(kind="result", variant=DEFAULT_VARIANT, **record.result.model_dump(include=fields)))
    return objects


def _position(job_id: str, modified: datetime | None) -> tuple[int, str]:
    return (int(modified.timestamp() * 1000) if modified else 0, job_id)


def _cursor(position: tuple[int, str]) -> str:
    return f"{position[0]}.{position[1]}"


def parse_cursor(cursor: str) -> tuple[int, str]:
    match = re.fullmatch(CURSOR_PATTERN, cursor)
    if match is None:
        raise errors.InvalidInput("after: not a cursor this API gave (next_cursor of a page)", field="after")
    return int(match[1]), match[2]


def list_page(client: Client, jobs: JobStore, limit: int, after: str | None = None) -> Page:
    """The client's jobs stored before the cursor's, newest first: at most `limit`, at most SCAN_MAX read."""
    start = parse_cursor(after) if after else None
    try:
        dated = sorted(((_position(job_id, at), at) for job_id, at in jobs.list_dated()), reverse=True)
    except StorageError as exc:
        raise unavailable("object storage", exc) from exc
    if start is not None:
        dated = [entry for entry in dated if entry[0] < start]
    page: list[StoredJob] = []
    for scanned, (position, at) in enumerate(dated):
        if len(page) == limit or scanned == SCAN_MAX:
            return Page(page, _cursor(dated[scanned - 1][0]))
        record = _readable(jobs, position[1])
        if record is not None and client.may_see(record.owner):
            page.append(StoredJob(record, at.astimezone(UTC) if at else None, stored_objects(record)))
    return Page(page, None)


def _readable(jobs: JobStore, job_id: str) -> JobRecord | None:
    """The record, or None if it went (retention) or cannot be read."""
    try:
        return jobs.get(job_id)
    except StorageError as exc:
        raise unavailable("object storage", exc) from exc
    except ValueError:
        logger.warning("job record %s cannot be read; left out of the storage listing", job_id)
        return None


def open_preview(
    job_id: str, kind: ObjectKind, client: Client, jobs: JobStore, store: ObjectStorage, variant: str | None = None
) -> tuple[StoredObject, Iterator[bytes]]:
    """The stored original or result (the first variant's, or the one named) of the client's job,
    if small enough to show as it is."""
    if variant is not None and (kind != "result" or not is_variant_name(variant)):
        raise errors.NotFound(f"no variant {variant[:64]!r}: variant names are 1 to 32 of a-z, 0-9, '-' and '_'")
    record = find_job(job_id, client, jobs)
    found = [obj for obj in stored_objects(record) if obj.kind == kind and variant in (None, obj.variant)]
    stored = found[0] if found else None
    if stored is None:
        what = kind if variant is None else f"variant {variant!r}"
        raise errors.NotFound(f"job {job_id} has no {what} (it is {record.status})")
    if not stored.previewable:
        raise errors.NotFound(
            f"no preview of the {kind}: only {', '.join(sorted(PREVIEW_FORMATS))} up to "
            f"{PREVIEW_MAX_BYTES // 1024 // 1024} MiB and {PREVIEW_MAX_PIXELS // 1_000_000} MP are shown as they are"
        )
    if kind == "original":
        key = original_key(record.job_id)
    else:
        key = result_key(record.job_id, stored.format, stored.variant or DEFAULT_VARIANT)
    return stored, stream_object(store, key)
