"""The dead-letter queue: what failed and why, and moving jobs back once the cause is fixed."""

from fastapi import APIRouter, HTTPException, status
from pika.exceptions import AMQPError
from pydantic import BaseModel, Field

from api.auth import AdminClient
from api.dependencies import ServicesDep
from common.deadletters import DeadLetterQueue, DeadLetterStats

router = APIRouter(prefix="/dlq", tags=["dead letters"])


class ReplayRequest(BaseModel):
    job_id: str | None = Field(None, description="replay only this job; omit to replay all")
    reason: str | None = Field(None, description="replay only letters with this reason")


class ReplayResponse(BaseModel):
    replayed: int
    job_ids: list[str | None]
    skipped: list[dict]
    remaining: int


def _queue(services: ServicesDep) -> DeadLetterQueue:
    return DeadLetterQueue(services.settings, services.publisher, services.jobs)


def _broker_unavailable(exc: Exception) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"the message broker is unavailable; try again later ({type(exc).__name__})",
        headers={"Retry-After": "5"},
    )


@router.get("/stats", response_model=DeadLetterStats)
def dead_letter_stats(services: ServicesDep, _operator: AdminClient, recent: int = 10) -> DeadLetterStats:
    try:
        return _queue(services).stats(recent=max(0, min(recent, 100)))
    except (AMQPError, OSError) as exc:
        raise _broker_unavailable(exc) from exc


@router.post("/replay", response_model=ReplayResponse)
def replay_dead_letters(
    services: ServicesDep, _operator: AdminClient, request: ReplayRequest | None = None
) -> ReplayResponse:
    request = request or ReplayRequest()
    try:
        result = _queue(services).replay(job_id=request.job_id, reason=request.reason)
    except (AMQPError, OSError) as exc:
        raise _broker_unavailable(exc) from exc
    if request.job_id and not result.replayed and not result.skipped:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {request.job_id} is not in the dead-letter queue")
    return ReplayResponse(
        replayed=len(result.replayed), job_ids=result.replayed, skipped=result.skipped, remaining=result.remaining
    )
