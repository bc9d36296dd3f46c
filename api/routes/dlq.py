"""The dead-letter queue: what failed and why, and moving jobs back once the cause is fixed."""

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api import errors
from api.auth import AdminClient
from api.deadletters import DeadLetterQueue, DeadLetterStats
from api.dependencies import ServicesDep
from api.problems import documented

router = APIRouter(prefix="/dlq", tags=["dead letters"])


class ReplayRequest(BaseModel):
    job_id: str | None = Field(None, description="replay only this job; omit to replay all")
    reason: str | None = Field(None, description="replay only letters with this reason")


class ReplayResponse(BaseModel):
    replayed: int
    job_ids: list[str | None]
    skipped: list[dict[str, Any]]
    remaining: int


def _queue(services: ServicesDep) -> DeadLetterQueue:
    return DeadLetterQueue(services.broker, services.publisher, services.jobs)


@router.get(
    "/stats", response_model=DeadLetterStats, operation_id="dead_letter_stats",
    responses=documented(401, 403, 422, 503),
)
def dead_letter_stats(
    services: ServicesDep, _operator: AdminClient, recent: int = Query(10, ge=0, le=100)
) -> DeadLetterStats:
    return _queue(services).stats(recent=recent)


@router.post(
    "/replay", response_model=ReplayResponse, operation_id="replay_dead_letters",
    responses=documented(401, 403, 404, 422, 503),
)
def replay_dead_letters(
    services: ServicesDep, _operator: AdminClient, request: ReplayRequest | None = None
) -> ReplayResponse:
    request = request or ReplayRequest()
    result = _queue(services).replay(job_id=request.job_id, reason=request.reason)
    if request.job_id and not result.replayed and not result.skipped:
        raise errors.NotFound(f"job {request.job_id[:64]!r} is not in the dead-letter queue", field="job_id")
    return ReplayResponse(
        replayed=len(result.replayed), job_ids=result.replayed, skipped=result.skipped, remaining=result.remaining
    )
