"""The dead-letter queue: what failed and why, and moving jobs back once the cause is fixed.

Messages are read without being consumed (`common.amqp.inspect_queue`): inspecting never loses
or reorders anything. A replayed message is republished to the work exchange (confirmed) before
the dead copy is removed: a crash in between leaves a duplicate, which the worker recognises (a
completed job is not processed twice), never a loss.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from api import errors
from api.service import announce
from common.amqp import BrokerUnavailable, QueuedMessage, QueueInspector, inspect_queue
from common.jobs import IllegalTransition, JobRecord, JobStatus, JobStore
from common.messages import Header
from common.ports import MessagePublisher
from common.settings import BrokerSettings
from common.topology import DEAD_LETTER_QUEUE, JOBS_EXCHANGE, JOBS_ROUTING_KEY

logger = logging.getLogger(__name__)

SCAN_LIMIT = 10_000


class DeadLetter(BaseModel):
    job_id: str | None
    reason: str
    error: str | None
    attempts: int | None
    failed_at: datetime | None
    worker: str | None
    message_id: str | None

    @classmethod
    def from_message(cls, message: QueuedMessage) -> "DeadLetter":
        headers = message.headers
        reason = headers.get(Header.FAILURE_REASON)
        failed_at = _parse_time(headers.get(Header.FAILED_AT))
        if reason is None:
            # Dead-lettered by the broker itself (a nack, a delivery limit, an expiry).
            deaths = headers.get(Header.BROKER_DEATHS) or [{}]
            reason = f"broker_{deaths[0].get('reason', 'unknown')}"
            failed_at = failed_at or _parse_time(deaths[0].get("time"))
        attempts = headers.get(Header.ATTEMPTS_MADE)
        return cls(
            job_id=_text(headers.get(Header.JOB_ID)),
            reason=_text(reason) or "unknown",
            error=_text(headers.get(Header.FAILURE_ERROR)),
            attempts=attempts if isinstance(attempts, int) else None,
            failed_at=failed_at,
            worker=_text(headers.get(Header.WORKER)),
            message_id=message.message_id,
        )


class DeadLetterStats(BaseModel):
    count: int
    by_reason: dict[str, int]
    oldest_failed_at: datetime | None
    oldest_age_s: float | None
    recent: list[DeadLetter]


@dataclass
class ReplayResult:
    replayed: list[str | None] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    remaining: int = 0


class DeadLetterQueue:
    def __init__(self, broker: BrokerSettings, publisher: MessagePublisher, jobs: JobStore) -> None:
        self._broker = broker
        self._publisher = publisher
        self._jobs = jobs

    def stats(self, recent: int = 10) -> DeadLetterStats:
        with self._inspect() as queue:
            count = queue.depth()  # before reading: messages being read are not counted
            letters = [DeadLetter.from_message(message) for message in queue.messages(SCAN_LIMIT)]
        dated = [letter.failed_at for letter in letters if letter.failed_at]
        oldest = min(dated) if dated else None
        return DeadLetterStats(
            count=count,
            by_reason=dict(Counter(letter.reason for letter in letters)),
            oldest_failed_at=oldest,
            oldest_age_s=round((datetime.now(UTC) - oldest).total_seconds(), 1) if oldest else None,
            recent=list(reversed(letters[-recent:])) if recent else [],
        )

    def replay(self, job_id: str | None = None, reason: str | None = None) -> ReplayResult:
        """Moves matching dead letters (all, one job's, or one reason's) back to the work queue."""
        result = ReplayResult()
        with self._inspect() as queue:
            for message in queue.messages(SCAN_LIMIT):
                letter = DeadLetter.from_message(message)
                if (job_id and letter.job_id != job_id) or (reason and letter.reason != reason):
                    continue
                try:
                    self._reset_record(letter.job_id)
                    headers = {k: v for k, v in message.headers.items() if k not in Header.FAILURE_HEADERS}
                    headers[Header.REPLAYED_AT] = datetime.now(UTC).isoformat()
                    self._publisher.publish(
                        JOBS_EXCHANGE, JOBS_ROUTING_KEY, message.body,
                        message_id=message.message_id, headers=headers,
                        content_type=message.content_type or "application/json",
                    )
                except Exception as exc:  # reported per message; the letter stays
                    result.skipped.append({"job_id": letter.job_id, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                queue.remove(message)
                result.replayed.append(letter.job_id)
                logger.info("replayed from the dead-letter queue", extra={"job_id": letter.job_id})
        with self._inspect() as queue:
            result.remaining = queue.depth()
        return result

    def _reset_record(self, job_id: str | None) -> None:
        if job_id is None:
            return
        reset: list[bool] = []

        def change(record: JobRecord) -> bool:
            reset[:] = [False]
            if record.status is JobStatus.COMPLETED:
                return False
            try:
                record.reset()
            except IllegalTransition:
                return False
            reset[:] = [True]
            return True

        record = self._jobs.update(job_id, change)
        if record is not None and reset == [True]:
            announce(record, self._publisher)

    @contextmanager
    def _inspect(self) -> Iterator[QueueInspector]:
        try:
            with inspect_queue(self._broker, DEAD_LETTER_QUEUE, "dead-letter admin") as queue:
                yield queue
        except BrokerUnavailable as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: Exception) -> errors.Unavailable:
    return errors.Unavailable(f"the message broker is unavailable; try again later ({exc})", retry_after_s=5)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (bytes, str)):
        try:
            return datetime.fromisoformat(_text(value) or "")
        except ValueError:
            return None
    return None
