"""A client's own jobs: list them (GET /jobs), cancel one (DELETE /jobs/{id}, POST /jobs/{id}/cancel)."""

from typing import Annotated

from fastapi import APIRouter, Query

from api import cancellation, listing
from api.auth import CurrentClient
from api.dependencies import ServicesDep
from api.job_index import ENTRY_PATTERN
from api.problems import documented
from api.routes.jobs import status_response
from api.schemas import JobStatusResponse
from common.jobs import JobStatus

router = APIRouter(tags=["jobs"])


@router.get("/jobs", response_model=listing.JobList, operation_id="list_jobs", responses=documented(401, 422, 503))
def list_jobs(
    services: ServicesDep,
    client: CurrentClient,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=listing.LIMIT_MAX, description="jobs per page")] = 20,
    cursor: Annotated[
        str | None,
        Query(pattern=ENTRY_PATTERN.pattern, description="next_cursor of the page before: the page after it"),
    ] = None,
) -> listing.JobList:
    """The calling client's jobs (an operator's: every job), newest first."""
    return listing.list_jobs(client, services.store, services.jobs, services.public_url, limit, status, cursor)


@router.delete(
    "/jobs/{job_id}", response_model=JobStatusResponse, operation_id="cancel_job",
    responses=documented(401, 404, 409, 503),
)
@router.post(
    "/jobs/{job_id}/cancel", response_model=JobStatusResponse, operation_id="cancel_job_post",
    responses=documented(401, 404, 409, 503),
)
def cancel_job(job_id: str, services: ServicesDep, client: CurrentClient) -> JobStatusResponse:
    """Queued or retrying: never processed; processing: stopped, no result stored. 409 once finished."""
    record = cancellation.cancel_job(job_id, client, services.jobs, services.store, services.publisher)
    return status_response(record, services)
