"""GET /jobs: the calling client's jobs (an operator's: every job), newest first, a page at a time.

Pages come from the job index (api/job_index.py) listed after the cursor; the cursor is an index
entry's name, checked against its pattern and always joined to the caller's own index prefix, so
no cursor reaches another client's jobs. Each listed job's record is read for its status; a job
whose record went (retention) is left out.
"""

import logging
from datetime import datetime

from pydantic import BaseModel

from api import errors
from api.job_index import ENTRY_PATTERN, EVERY_JOB, owner_prefix
from api.service import unavailable
from common.clients import Client
from common.jobs import JobRecord, JobStatus, JobStore
from common.operations import Operation
from common.ports import ObjectStorage
from common.storage import StorageError

logger = logging.getLogger("api")

LIMIT_MAX = 100
# Index entries read for one page at most: a status filter that matches few jobs gives a shorter
# page and a cursor to go on from.
SCAN_MAX = 500


class JobSummary(BaseModel):
    job_id: str
    status: JobStatus
    operations: list[Operation]
    output_format: str | None
    filename: str | None
    created_at: datetime
    finished_at: datetime | None
    error_reason: str | None
    status_url: str


class JobList(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None


def parse_cursor(cursor: str) -> str:
    if ENTRY_PATTERN.fullmatch(cursor) is None:
        raise errors.InvalidInput("cursor: not a cursor this API gave (next_cursor of a page)", field="cursor")
    return cursor


def list_jobs(
    client: Client, store: ObjectStorage, jobs: JobStore, public_url: str,
    limit: int, wanted: JobStatus | None = None, cursor: str | None = None,
) -> JobList:
    prefix = EVERY_JOB if client.admin else owner_prefix(client.name)
    after = prefix + parse_cursor(cursor) if cursor else None
    page: list[JobSummary] = []
    scanned = 0
    try:
        while True:
            keys = store.list_after(prefix, after, limit if wanted is None else LIMIT_MAX)
            if not keys:
                return JobList(jobs=page, next_cursor=None)
            for key in keys:
                after = key
                scanned += 1
                record = _listed_record(jobs, key.removeprefix(prefix))
                if record is not None and client.may_see(record.owner) and wanted in (None, record.status):
                    page.append(_summary(record, public_url))
                if len(page) == limit or scanned == SCAN_MAX:
                    return JobList(jobs=page, next_cursor=key.removeprefix(prefix))
    except StorageError as exc:
        raise unavailable("object storage", exc) from exc


def _listed_record(jobs: JobStore, entry: str) -> JobRecord | None:
    match = ENTRY_PATTERN.fullmatch(entry)
    if match is None:
        return None
    try:
        return jobs.get(match[2])
    except ValueError:
        logger.warning("job record %s cannot be read; left out of the listing", match[2])
        return None


def _summary(record: JobRecord, public_url: str) -> JobSummary:
    return JobSummary(
        job_id=record.job_id, status=record.status, operations=record.operations,
        output_format=record.output_format, filename=record.original.filename, created_at=record.created_at,
        finished_at=record.finished_at, error_reason=record.error_reason,
        status_url=f"{public_url}/status/{record.job_id}",
    )
