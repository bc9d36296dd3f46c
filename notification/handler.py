"""What the notifier does with one job event: log it, deliver its webhook, record the outcome."""

import logging

from pydantic import ValidationError

from common.amqp import Delivery, Outcome
from common.jobs import JobStore, WebhookDelivery
from common.messages import JobEvent
from common.storage import StorageError
from notification.webhook import DeliveryReport, WebhookSender

logger = logging.getLogger("notification")


class EventHandler:
    def __init__(self, sender: WebhookSender, jobs: JobStore) -> None:
        self._sender = sender
        self._jobs = jobs

    def __call__(self, delivery: Delivery) -> Outcome:
        try:
            event = JobEvent.model_validate_json(delivery.body)
        except ValidationError as exc:
            logger.error("dropping an unreadable event to the dead-letter queue: %s", exc.errors()[:2])
            return Outcome.DEAD_LETTER
        log = {"extra": {"job_id": event.job_id}}
        if event.status == "completed" and event.result:
            logger.info(
                "job %s completed by %s: %dx%d %s, %d bytes",
                event.job_id, event.worker, event.result.width, event.result.height,
                event.result.format, event.result.bytes, **log,
            )
        else:
            logger.info("job %s failed after %d attempts: %s", event.job_id, event.attempts, event.error, **log)

        if event.callback_url:
            report = self._sender.send(event.callback_url, event.event, event.job_id, delivery.body)
            if report.delivered:
                logger.info(
                    "webhook delivered to %s (HTTP %s, attempt %d)",
                    event.callback_url, report.status_code, report.attempts, **log,
                )
            else:
                logger.error(
                    "webhook to %s given up after %d attempts: %s",
                    event.callback_url, report.attempts, report.error, **log,
                )
            self._record(event, report)
        return Outcome.ACK

    def _record(self, event: JobEvent, report: DeliveryReport) -> None:
        """Notes the delivery on the job record, so GET /status shows it; best effort."""
        try:
            record = self._jobs.get(event.job_id)
            if record is None:
                return
            record.webhook = WebhookDelivery(
                url=event.callback_url or "",
                event=event.event,
                delivered=report.delivered,
                attempts=report.attempts,
                status_code=report.status_code,
                error=report.error,
            )
            self._jobs.save(record)
        except StorageError:
            logger.exception("could not record the webhook outcome", extra={"job_id": event.job_id})
