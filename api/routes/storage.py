"""Browsing stored originals and results (the console's Storage page): a page of the client's
jobs with their objects' sizes and dates, and a bounded preview of each object."""

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api import storage_browser
from api.auth import CurrentClient
from api.dependencies import ServicesDep
from api.problems import documented
from api.storage_browser import CURSOR_PATTERN, PAGE_SIZE_MAX, ObjectKind, StoredJob, StoredObject
from common.jobs import JobStatus

router = APIRouter(prefix="/storage", tags=["storage"])


class StoredObjectView(StoredObject):
    preview_url: str | None  # None: too large or not a format a browser shows; the size is still listed


class StoredJobView(BaseModel):
    job_id: str
    status: JobStatus
    owner: str | None
    filename: str | None
    created_at: datetime
    stored_at: datetime | None
    objects: list[StoredObjectView]


class StoragePage(BaseModel):
    jobs: list[StoredJobView]
    next_cursor: str | None  # pass as `after` for the next page; None: the last page
    console_url: str | None  # the object store's own console (STORAGE_CONSOLE_URL), if there is one


def _view(job: StoredJob, public_url: str) -> StoredJobView:
    record = job.record
    return StoredJobView(
        job_id=record.job_id, status=record.status, owner=record.owner, filename=record.original.filename,
        created_at=record.created_at, stored_at=job.stored_at,
        objects=[
            StoredObjectView(
                **obj.model_dump(),
                preview_url=_preview_path(public_url, record.job_id, obj) if obj.previewable else None,
            )
            for obj in job.objects
        ],
    )


def _preview_path(public_url: str, job_id: str, obj: StoredObject) -> str:
    path = f"{public_url}/storage/{job_id}/{obj.kind}"
    return path if obj.kind == "original" else f"{path}/{obj.variant}"


@router.get("", response_model=StoragePage, operation_id="storage_list", responses=documented(401, 422, 503))
async def storage_list(
    services: ServicesDep,
    client: CurrentClient,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description="jobs per page")] = 24,
    after: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the page before")
    ] = None,
) -> StoragePage:
    page = await run_in_threadpool(storage_browser.list_page, client, services.jobs, limit, after)
    return StoragePage(
        jobs=[_view(job, services.public_url) for job in page.jobs], next_cursor=page.next_cursor,
        console_url=services.storage_console_url or None,
    )


_PREVIEW_RESPONSES = {
    200: {"content": {"image/*": {}}, "description": "the stored object"}, **documented(401, 404, 422, 503)
}


@router.get(
    "/{job_id}/{kind}", response_class=StreamingResponse, operation_id="storage_preview", responses=_PREVIEW_RESPONSES,
)
def storage_preview(job_id: str, kind: ObjectKind, services: ServicesDep, client: CurrentClient) -> StreamingResponse:
    """The original, or the result of the job's first variant."""
    return _preview(*storage_browser.open_preview(job_id, kind, client, services.jobs, services.store))


@router.get(
    "/{job_id}/result/{variant}", response_class=StreamingResponse, operation_id="storage_preview_variant",
    responses=_PREVIEW_RESPONSES,
)
def storage_preview_variant(
    job_id: str, variant: str, services: ServicesDep, client: CurrentClient
) -> StreamingResponse:
    """The result of the variant named."""
    return _preview(*storage_browser.open_preview(job_id, "result", client, services.jobs, services.store, variant))


def _preview(stored: StoredObject, body: Iterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type=stored.content_type,
        headers={
            "Content-Length": str(stored.bytes),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=300",
        },
    )
