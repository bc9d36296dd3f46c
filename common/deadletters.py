"""Reading and replaying the dead-letter queue.

Messages are read with basic_get on a channel of their own and left unacked; closing the channel
puts every one not explicitly acked back in its place, so inspecting never loses or reorders
anything. A replayed message is republished to the work exchange (confirmed) before the dead copy
is acked: a crash in between leaves a duplicate, which the worker recognises (a completed job is
not processed twice), never a loss.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import BasicProperties
from pydantic import BaseModel

from common.amqp import Publisher, connect
from common.jobs import JobStatus, JobStore
from common.settings import Settings
from common.topology import DEAD_LETTER_QUEUE, JOBS_EXCHANGE, JOBS_ROUTING_KEY, declare_topology

logger = logging.getLogger(__name__)

# Headers the worker adds when it dead-letters or retries a message; a replay starts afresh.
_FAILURE_HEADERS = (
    "x-failure-reason", "x-failure-error", "x-attempts", "x-failed-at", "x-worker", "x-attempt",
    "x-last-error", "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
)


class DeadLetter(BaseModel):
    job_id: str | None
    reason: str
    error: str | None
    attempts: int | None
    failed_at: datetime | None
    worker: str | None
    message_id: str | None

    @classmethod
    def from_properties(cls, properties: BasicProperties) -> "DeadLetter":
        headers = properties.headers or {}
        reason = headers.get("x-failure-reason")
        failed_at = _parse_time(headers.get("x-failed-at"))
        if reason is None:
            # Dead-lettered by the broker itself (a nack, a delivery limit, an expiry).
            deaths = headers.get("x-death") or [{}]
            reason = f"broker_{deaths[0].get('reason', 'unknown')}"
            failed_at = failed_at or _parse_time(deaths[0].get("time"))
        return cls(
            job_id=_text(headers.get("x-job-id")),
            reason=_text(reason) or "unknown",
            error=_text(headers.get("x-failure-error")),
            attempts=headers.get("x-attempts"),
            failed_at=failed_at,
            worker=_text(headers.get("x-worker")),
            message_id=properties.message_id,
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
    skipped: list[dict] = field(default_factory=list)
    remaining: int = 0


class DeadLetterQueue:
    def __init__(self, settings: Settings, publisher: Publisher, jobs: JobStore, scan_limit: int = 10_000) -> None:
        self._settings = settings
        self._publisher = publisher
        self._jobs = jobs
        self._scan_limit = scan_limit

    def stats(self, recent: int = 10) -> DeadLetterStats:
        with self._channel() as channel:
            count = _depth(channel)  # before reading: messages being read are not counted
            letters = [DeadLetter.from_properties(props) for _, props, _ in self._read_all(channel)]
        dated = [letter.failed_at for letter in letters if letter.failed_at]
        oldest = min(dated) if dated else None
        return DeadLetterStats(
            count=count,
            by_reason=dict(Counter(letter.reason for letter in letters)),
            oldest_failed_at=oldest,
            oldest_age_s=round((datetime.now(timezone.utc) - oldest).total_seconds(), 1) if oldest else None,
            recent=list(reversed(letters[-recent:])) if recent else [],
        )

    def replay(self, job_id: str | None = None, reason: str | None = None) -> ReplayResult:
        """Moves matching dead letters (all, one job's, or one reason's) back to the work queue."""
        result = ReplayResult()
        with self._channel() as channel:
            for tag, properties, body in self._read_all(channel):
                letter = DeadLetter.from_properties(properties)
                if (job_id and letter.job_id != job_id) or (reason and letter.reason != reason):
                    continue
                try:
                    self._reset_record(letter.job_id)
                    headers = {k: v for k, v in (properties.headers or {}).items() if k not in _FAILURE_HEADERS}
                    headers["x-replayed-at"] = datetime.now(timezone.utc).isoformat()
                    self._publisher.publish(
                        JOBS_EXCHANGE, JOBS_ROUTING_KEY, body,
                        message_id=properties.message_id, headers=headers,
                        content_type=properties.content_type or "application/json",
                    )
                except Exception as exc:  # noqa: BLE001 - reported per message; the letter stays
                    result.skipped.append({"job_id": letter.job_id, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                channel.basic_ack(tag)
                result.replayed.append(letter.job_id)
                logger.info("replayed from the dead-letter queue", extra={"job_id": letter.job_id})
        with self._channel() as channel:
            result.remaining = _depth(channel)
        return result

    def _reset_record(self, job_id: str | None) -> None:
        if job_id is None:
            return
        record = self._jobs.get(job_id)
        if record is None or record.status is JobStatus.COMPLETED:
            return
        record.status = JobStatus.QUEUED
        record.attempts = 0
        record.error = record.error_reason = None
        record.started_at = record.finished_at = record.next_attempt_at = None
        self._jobs.save(record)

    def _read_all(self, channel: BlockingChannel):
        for _ in range(min(_depth(channel), self._scan_limit)):
            method, properties, body = channel.basic_get(DEAD_LETTER_QUEUE, auto_ack=False)
            if method is None:
                return
            yield method.delivery_tag, properties, body

    @contextmanager
    def _channel(self) -> Iterator[BlockingChannel]:
        """A connection of its own for one inspection; closing it returns unacked messages."""
        connection = connect(self._settings, "dead-letter admin")
        try:
            channel = connection.channel()
            declare_topology(channel, self._settings)
            yield channel
        finally:
            if connection.is_open:
                connection.close()


def _depth(channel: BlockingChannel) -> int:
    return channel.queue_declare(DEAD_LETTER_QUEUE, passive=True).method.message_count


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (bytes, str)):
        try:
            return datetime.fromisoformat(_text(value))
        except ValueError:
            return None
    return None
