"""What the notifier does with one job event: log it, deliver its webhook, record the outcome.

The event on the bus is only a hint that a job changed. Who to call, with which secret, and what
to say come from the job record, the durable truth: a forged or stale event can at most make the
notifier tell a job's own client its real state again. An event that says its job has no webhook
is logged and not looked up further (one storage read less per job).

Each message handles one delivery attempt; an attempt that fails for a reason worth retrying goes
to a delay queue and comes back (attempt counted in `x-webhook-attempt`), so no handler thread
sleeps on a failing endpoint, and an endpoint that already has WEBHOOK_PER_HOST_CONCURRENCY
deliveries in flight gets the next ones later instead of holding the notifier's other threads
(`x-webhook-deferrals`).
"""

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pydantic import ValidationError

from common.amqp import Delivery, Outcome, Publisher, PublishFailed
from common.clients import KeyRing
from common.egress import UnsafeTarget, parse_callback_url
from common.jobs import IllegalTransition, JobRecord, JobStatus, JobStore, WebhookDelivery
from common.logs import job_logger
from common.messages import Header, JobEvent
from common.storage import ObjectStore, StorageError
from common.topology import EVENT_CANCELLED, EVENT_COMPLETED, EVENT_FAILED, RETRY_EXCHANGE, RetryStep
from notification.webhook import AttemptResult, WebhookSender

logger = logging.getLogger("notification")

MAX_DEFERRALS = 50
NOT_DELIVERED = "not delivered: the endpoint did not accept the event"


class HostSlots:
    """Deliveries in flight per host, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, host: str) -> Iterator[bool]:
        with self._lock:
            granted = self._in_flight[host] < self._limit
            if granted:
                self._in_flight[host] += 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self._in_flight[host] -= 1


def message_id(record: JobRecord) -> str:
    """The same for every attempt and re-publication of one outcome; new after a replay."""
    finished = int(record.finished_at.timestamp() * 1000) if record.finished_at else 0
    return f"msg_{record.job_id}_{record.status.value}_{finished}"


class EventHandler:
    def __init__(
        self,
        sender: WebhookSender,
        jobs: JobStore,
        store: ObjectStore,
        keys: KeyRing,
        publisher: Publisher,
        retry_steps: list[RetryStep],
        attempts: int,
        per_host: int,
    ) -> None:
        self._sender = sender
        self._jobs = jobs
        self._store = store
        self._keys = keys
        self._publisher = publisher
        self._steps = retry_steps
        self._attempts = attempts
        self._slots = HostSlots(per_host)

    def __call__(self, delivery: Delivery) -> Outcome:
        try:
            event = JobEvent.model_validate_json(delivery.body)
        except ValidationError as exc:
            logger.error("dead-lettering an unreadable event: %s", exc.errors()[:2])
            return Outcome.DEAD_LETTER
        log = job_logger(logger, event.job_id)
        if not event.webhook:
            # Nothing to send: the record (one storage read per job) is only needed for a webhook.
            if event.final:
                _log_event(event)
            return Outcome.ACK
        try:
            record = self._jobs.get(event.job_id)
        except StorageError as exc:
            log.warning("job record unreadable (%s); trying the event again later", exc)
            return self._later(delivery, attempt=self._attempt(delivery), deferred=True)
        if record is None:
            log.warning("event for a job without a record; nothing to notify")
            return Outcome.ACK
        if record.status.value != event.status:
            log.warning("event says %s but the job is %s; ignored", event.status, record.status.value)
            return Outcome.ACK
        if self._attempt(delivery) == 1 and not delivery.headers.get(Header.WEBHOOK_DEFERRALS):
            _log_event(record.to_event())
        if not record.callback_url:
            return Outcome.ACK
        if record.webhook and record.webhook.delivered and record.webhook.message_id == message_id(record):
            log.info("webhook for this outcome already delivered; not sending it again")
            return Outcome.ACK
        return self._deliver(delivery, record)

    def _deliver(self, delivery: Delivery, record: JobRecord) -> Outcome:
        log = job_logger(logger, record.job_id)
        url = record.callback_url or ""
        attempt = self._attempt(delivery)
        try:
            host, _, _ = parse_callback_url(url)
        except UnsafeTarget as exc:
            log.error("webhook to %s refused: %s", url, exc)
            return self._finish(record, attempt, AttemptResult(False, False, str(exc)))
        with self._slots.slot(host) as granted:
            if not granted:
                deferrals = int(delivery.headers.get(Header.WEBHOOK_DEFERRALS, 0)) + 1
                if deferrals > MAX_DEFERRALS:
                    return self._finish(record, attempt, AttemptResult(False, False, f"{host} stayed busy"))
                return self._later(delivery, attempt, deferred=True)
            body = webhook_body(record, self._download_urls(record))
            result = self._sender.attempt(url, self._keys.webhook_secret(record.owner), message_id(record), body)
        if result.delivered or not result.retryable or attempt >= self._attempts:
            return self._finish(record, attempt, result)
        log.info("webhook %s attempt %d failed (%s); trying again later", url, attempt, result.detail)
        return self._later(delivery, attempt + 1, deferred=False)

    def _finish(self, record: JobRecord, attempts: int, result: AttemptResult) -> Outcome:
        log = job_logger(logger, record.job_id)
        if result.delivered:
            log.info("webhook delivered to %s (%s, attempt %d)", record.callback_url, result.detail, attempts)
        else:
            log.error(
                "webhook to %s given up after %d attempt(s): %s", record.callback_url, attempts, result.detail
            )
        self._record(record, attempts, result.delivered)
        return Outcome.ACK

    def _later(self, delivery: Delivery, attempt: int, deferred: bool) -> Outcome:
        deferrals = int(delivery.headers.get(Header.WEBHOOK_DEFERRALS, 0)) + (1 if deferred else 0)
        index = min(deferrals if deferred else attempt - 1, len(self._steps)) - 1
        step = self._steps[max(0, index)]
        headers = {**delivery.headers, Header.WEBHOOK_ATTEMPT: attempt, Header.WEBHOOK_DEFERRALS: deferrals}
        try:
            self._publisher.publish(
                RETRY_EXCHANGE, step.routing_key, delivery.body,
                message_id=delivery.properties.message_id, headers=headers,
            )
        except PublishFailed:
            return Outcome.REQUEUE
        return Outcome.ACK

    def _attempt(self, delivery: Delivery) -> int:
        try:
            return max(1, int(delivery.headers.get(Header.WEBHOOK_ATTEMPT, 1)))
        except (TypeError, ValueError):
            return 1

    def _download_urls(self, record: JobRecord) -> dict[str, str]:
        """A presigned URL for each stored result, by its key."""
        keys = {result.key for result in record.results} | ({record.result.key} if record.result else set())
        return {key: self._store.presigned_url(key) for key in keys}

    def _record(self, record: JobRecord, attempts: int, delivered: bool) -> None:
        """Notes the outcome on the job record, so GET /status shows it; best effort."""
        note = WebhookDelivery(
            url=record.callback_url or "",
            event=_event_name(record),
            message_id=message_id(record),
            delivered=delivered,
            attempts=attempts,
            error=None if delivered else NOT_DELIVERED,
        )

        def change(current: JobRecord) -> bool:
            current.note_webhook(note)
            return True

        try:
            self._jobs.update(record.job_id, change)
        except (StorageError, IllegalTransition):
            logger.exception("could not record the webhook outcome", extra={"job_id": record.job_id})


def _event_name(record: JobRecord) -> str:
    return {JobStatus.COMPLETED: EVENT_COMPLETED, JobStatus.CANCELLED: EVENT_CANCELLED}.get(record.status, EVENT_FAILED)


def webhook_body(record: JobRecord, download_urls: Mapping[str, str]) -> bytes:
    """What the client's endpoint receives, in Standard Webhooks' shape (type, timestamp, data);
    `download_urls`: the presigned URL of each result, by its key. `result` is the first variant's,
    `results` every variant's (with its name)."""
    result = None
    if record.result is not None:
        result = {**record.result.model_dump(mode="json"), "download_url": download_urls.get(record.result.key)}
    results = [
        {**variant.model_dump(mode="json"), "download_url": download_urls.get(variant.key)}
        for variant in record.results
    ]
    data = {
        "job_id": record.job_id,
        "status": record.status.value,
        "attempts": record.attempts,
        "worker": record.worker,
        "created_at": record.created_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "result": result,
        "results": results,
        "error": record.error,
        "error_reason": record.error_reason,
    }
    payload = {"type": _event_name(record), "timestamp": data["finished_at"] or data["created_at"], "data": data}
    return json.dumps(payload, separators=(",", ":")).encode()


def _log_event(event: JobEvent) -> None:
    """One line per outcome. For a job with a webhook the event is rebuilt from its record; without
    one it is the event as published, which another client of the broker could have forged: the
    record (GET /status) stays the truth."""
    log = job_logger(logger, event.job_id)
    if event.status == JobStatus.COMPLETED.value and event.result:
        log.info(
            "job %s completed by %s: %dx%d %s, %d bytes",
            event.job_id, event.worker, event.result.width, event.result.height,
            event.result.format, event.result.bytes,
        )
    elif event.status == JobStatus.CANCELLED.value:
        log.info("job %s cancelled by its client", event.job_id)
    else:
        log.info("job %s failed after %d attempts: %s", event.job_id, event.attempts, event.error)
