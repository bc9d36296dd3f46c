"""What a worker does with one job message.

Failures fall in two classes:
- permanent (undecodable or refused image, missing original, malformed message, attempts used
  up): the job is marked `failed`, a `job.failed` event is published, and the message goes to the
  dead-letter queue with the reason in its headers;
- transient (storage or broker errors): the message is republished to a delay queue and comes
  back after the delay; the job shows `retrying`, its attempt count and the next try.

The message is acked only once its outcome is durable: result stored, record written and event
published, or the copy in the retry or dead-letter queue confirmed by the broker.

If the connection that delivered the message is lost while the job runs (a broker node going
away), the broker has already handed the message to another consumer: the job stops before it
stores a result and before it publishes anything, and the copy that was redelivered finishes it
(seeing a `completed` record, it only publishes the event). A job is thus completed once, not
once per delivery.

A job its client cancelled (common/cancellation.py) is acked without work when its record says so;
one cancelled while it runs is stopped (the image process killed) and ends `cancelled`, with no
result left stored and no dead letter. The worker writes the record only over the version it read or
last wrote (`JobStore.replace`), as the API's cancel does: of a cancel and a completion that cross,
exactly one lands, and a completion that loses removes the results it stored.
"""

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from common.amqp import Delivery, DeliveryLost, Outcome, PublishFailed
from common.cancellation import CancelRequests
from common.jobs import JobRecord, JobStatus, JobStore, original_key, publish_event, result_key
from common.logs import job_logger
from common.messages import Header, JobMessage, ResultInfo, VariantResult, utcnow
from common.ports import MessagePublisher, ObjectStorage
from common.settings import WorkerSettings
from common.storage import ObjectMissing, StorageUnavailable
from common.topology import (
    DEAD_LETTER_EXCHANGE,
    RETRY_EXCHANGE,
    retry_steps,
)
from worker.isolation import Pipeline, PipelineCancelled, PipelineRequest
from worker.pipeline import ImageRejected, ProcessedImage, ProcessedVariants
from worker.stats import WorkerStats

logger = logging.getLogger(__name__)


@dataclass
class Held:
    """The job's record as this worker last read or wrote it, and that version's ETag."""

    record: JobRecord
    etag: str


class CancelledMeanwhile(Exception):
    """The client cancelled the job after this worker read its record."""


@dataclass
class PermanentFailure(Exception):
    reason: str
    error: str

    def __str__(self) -> str:
        return self.error


class JobHandler:
    def __init__(
        self,
        settings: WorkerSettings,
        store: ObjectStorage,
        jobs: JobStore,
        publisher: MessagePublisher,
        worker_name: str,
        stats: WorkerStats,
        pipeline: Pipeline,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._store = store
        self._jobs = jobs
        self._publisher = publisher
        self._worker = worker_name
        self._retry_steps = retry_steps(settings.retries)
        # Storage round trips that need not wait for each other: the original is fetched while the
        # record is read, and the "processing" record is written while the image is processed.
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{worker_name}-io")
        self._stats = stats
        self._cancels = CancelRequests(store)

    def __call__(self, delivery: Delivery) -> Outcome:
        try:
            message = JobMessage.model_validate_json(delivery.body)
        except ValidationError as exc:
            error = f"not a valid job message: {_summarise(exc)}"
            logger.error("dead-lettering an invalid message (%s)", error)
            self._stats.failed(None, "invalid_message")
            return self._dead_letter(delivery, None, "invalid_message", error, attempts=1)

        job_id = message.job_id
        log = job_logger(logger, job_id)
        held: Held | None = None
        attempt = _header_int(delivery.headers, Header.RETRY_ATTEMPT) + 1
        try:
            # Keys come from the job id, never from the message: another client's message must
            # not make this job read someone else's original.
            original = self._io.submit(self._store.get, original_key(job_id))
            found = self._jobs.read(job_id)
            if found is None:
                raise PermanentFailure("unknown_job", f"no job record for {job_id}")
            held = Held(*found)
            record = held.record
            disagreement = _disagreement(message, record)
            if disagreement:
                error = f"the message disagrees with the record of job {job_id} on {', '.join(disagreement)}"
                log.error("dead-lettering a message that does not match its job (%s)", error)
                self._stats.failed(None, "invalid_message")
                # The record is left alone: the message, not the job, is at fault.
                return self._dead_letter(delivery, job_id, "invalid_message", error, attempt)
            if record.status is JobStatus.FAILED:
                log.warning(
                    "job already failed (%s); acking this duplicate message without running it",
                    record.error_reason,
                )
                return Outcome.ACK
            if record.status is JobStatus.COMPLETED:
                log.info("already completed; publishing its event again and acking")
                self._publish_event(record, delivery)
                return Outcome.ACK
            if record.status is JobStatus.CANCELLED:
                log.info("cancelled by its client; acking without running it")
                self._stats.cancelled()
                return Outcome.ACK
            attempt = max(attempt, record.attempts + 1)
            if attempt > self._settings.retries.attempts:
                # Every attempt died with its worker (nothing was recorded of how): say how many there were.
                attempt = record.attempts
                raise PermanentFailure(
                    "attempts_exhausted",
                    f"gave up after {record.attempts} attempts; last error: {record.error or 'none recorded'}",
                )
            self._run(message, held, attempt, original, delivery)
            return Outcome.ACK
        except DeliveryLost as exc:
            log.warning("abandoned: %s; the redelivered copy finishes the job", exc)
            return Outcome.ABANDON
        except PermanentFailure as failure:
            log.warning("job failed for good: %s (%s)", failure.error, failure.reason)
            self._stats.failed(message.operations, failure.reason)
            self._record_failure(held, failure, delivery)
            return self._dead_letter(delivery, job_id, failure.reason, failure.error, attempt)
        except (StorageUnavailable, PublishFailed) as exc:
            return self._retry_later(delivery, job_id, held, attempt, exc)

    def _run(
        self, message: JobMessage, held: Held, attempt: int, original: Future[bytes], delivery: Delivery
    ) -> None:
        record = held.record
        log = job_logger(logger, record.job_id)
        record.start(self._worker, attempt)
        held.record = record.model_copy(deep=True)  # what a failure or a retry builds on, written or not
        writing = self._io.submit(self._save_and_announce, held, held.record, delivery)
        log.info("processing (attempt %d) %s", attempt, _describe(message))

        def cancelled() -> bool:
            return _cancelled_meanwhile(writing) or self._cancel_asked(record.job_id)

        try:
            try:
                data = original.result()
            except ObjectMissing as exc:
                raise PermanentFailure("original_missing", str(exc)) from exc
            try:
                processed = self._process(data, message, cancelled)
            except ImageRejected as exc:
                raise PermanentFailure(exc.reason, str(exc)) from exc
        except PipelineCancelled:
            processed = None
        finally:
            wait([writing])  # the record's next write (completed, failed, retrying) comes after it
        if not _cancelled_meanwhile(writing):
            writing.result()  # a failed status write is a transient failure, as it was when written first

        if delivery.lost.is_set():
            raise DeliveryLost("the broker connection was lost while the image was processed")
        if processed is None or _cancelled_meanwhile(writing):
            self._end_cancelled(record, delivery)
            return
        # Every output was made before any is stored: a job never completes with some variants.
        results = [self._store_output(record.job_id, name, output) for name, output in processed.outputs.items()]
        first = results[0]
        record.complete(ResultInfo.model_validate(first.model_dump(exclude={"name"})), results)
        try:
            self._write(held, record)
        except CancelledMeanwhile:
            # The cancel landed first: its client was told `cancelled`, so nothing is left behind.
            self._remove_outputs(record.job_id, results)
            self._end_cancelled(record, delivery)
            return
        self._stats.completed(record)  # once the record says completed: a redelivery is not counted again
        log.info(
            "completed: %s in %.0f ms",
            "; ".join(f"{r.name} {r.width}x{r.height} {r.format}, {r.bytes} bytes" for r in results),
            record.timings.processing_ms or 0,
        )
        self._publish_event(record, delivery)

    def _write(self, held: Held, record: JobRecord) -> None:
        """Writes `record` over the version `held` names and holds the new one. Raises
        CancelledMeanwhile if the client cancelled the job since; any other write in between (a
        duplicate delivery's) is written over, as it would be without the condition."""
        etag = self._jobs.replace(record, held.etag)
        if etag is None:
            current = self._jobs.get(record.job_id)
            if current is not None and current.status is JobStatus.CANCELLED:
                raise CancelledMeanwhile()
            etag = self._jobs.save(record)
        held.record, held.etag = record, etag

    def _remove_outputs(self, job_id: str, results: list[VariantResult]) -> None:
        for result in results:
            try:
                self._store.delete(result.key)
            except StorageUnavailable:
                job_logger(logger, job_id).exception("could not remove %s of a cancelled job", result.key)

    def _cancel_asked(self, job_id: str) -> bool:
        """Polled while the image is processed: a storage hiccup is not a cancel (the check before
        the result is stored asks again, and does not swallow it)."""
        try:
            return self._cancels.find(job_id) is not None
        except StorageUnavailable:
            return False

    def _end_cancelled(self, record: JobRecord, delivery: Delivery) -> None:
        """Nothing is left stored. The API wrote the record `cancelled` (and then the request); a
        record that does not say so, with a request there, is written `cancelled` with the request's
        time, so the event and webhook are the same ones."""
        log = job_logger(logger, record.job_id)
        self._stats.cancelled()
        request = self._cancels.find(record.job_id)
        current = self._jobs.get(record.job_id)
        if request is None or current is None or current.status is JobStatus.CANCELLED:
            log.info("cancelled while processing; stopped, nothing stored")
            return
        current.cancel(request.requested_at)
        self._jobs.save(current)
        log.info("cancelled while processing; stopped, nothing stored, record written cancelled again")
        self._publish_event(current, delivery)

    def _store_output(self, job_id: str, variant: str, output: ProcessedImage) -> VariantResult:
        key = result_key(job_id, output.format, variant)
        self._store.put(key, output.data, content_type=output.content_type)
        return VariantResult(
            name=variant, key=key, width=output.width, height=output.height, bytes=len(output.data),
            format=output.format, content_type=output.content_type,
        )

    def _process(
        self, data: bytes, message: JobMessage, cancelled: Callable[[], bool] | None = None
    ) -> ProcessedVariants:
        processed = self._pipeline.run_variants(
            PipelineRequest(
                data=data,
                operations=list(message.operations),
                output_format=message.output_format,
                quality=message.quality,
                max_pixels=self._settings.max_image_pixels,
                max_output_pixels=self._settings.max_output_pixels,
                time_limit_s=self._settings.job_time_limit_s,
                color=message.color,
                metadata=message.metadata,
                max_frames=self._settings.max_frames,
                max_bytes=message.max_bytes,
                logo_dir=self._settings.logo_dir,
                variants=list(message.variants) or None,
            ),
            cancelled,
        )
        # The image process decodes the original once per job: this line says so, once per decode.
        job_logger(logger, message.job_id).info(
            "decoded the original once at %dx%d (draft scale 1/%g) for %d variant(s)",
            processed.decoded_width, processed.decoded_height, processed.draft_scale, len(processed.outputs),
        )
        return processed

    def start(self) -> None:
        """Start the image process now rather than with the first job."""
        self._pipeline.start()

    def close(self) -> None:
        self._pipeline.close()
        self._io.shutdown(wait=False)

    def _retry_later(
        self, delivery: Delivery, job_id: str, held: Held | None, attempt: int, exc: Exception
    ) -> Outcome:
        record = None if held is None else held.record
        log = job_logger(logger, job_id)
        error = f"{type(exc).__name__}: {exc}"
        if attempt >= self._settings.retries.attempts:
            failure = PermanentFailure("attempts_exhausted", f"gave up after {attempt} attempts; last error: {error}")
            log.warning("%s", failure.error)
            self._stats.failed(record.operations if record else None, failure.reason)
            self._record_failure(held, failure, delivery)
            return self._dead_letter(delivery, job_id, failure.reason, failure.error, attempt)

        step = self._retry_steps[attempt - 1]
        headers = {**delivery.headers, Header.RETRY_ATTEMPT: attempt, Header.LAST_ERROR: error[:500]}
        try:
            self._publisher.publish(
                RETRY_EXCHANGE, step.routing_key, delivery.body,
                message_id=delivery.properties.message_id, headers=headers, cancel=delivery.lost,
            )
        except DeliveryLost:
            return Outcome.ABANDON  # the redelivered copy is tried again as it is
        except PublishFailed:
            log.warning("could not schedule a retry; handing the message back")
            return Outcome.REQUEUE
        log.warning("attempt %d failed (%s); retrying in %d ms", attempt, error, step.delay_ms)
        self._stats.retried()
        if held is not None and not held.record.finished:
            record = held.record.model_copy(deep=True)
            record.schedule_retry(utcnow() + timedelta(milliseconds=step.delay_ms), error)
            if self._save_quietly(held, record):
                self._announce(record, delivery)
        return Outcome.ACK

    def _record_failure(self, held: Held | None, failure: PermanentFailure, delivery: Delivery) -> None:
        if held is None or held.record.finished:
            return
        record = held.record.model_copy(deep=True)
        record.fail(failure.reason, failure.error, self._worker)
        if not self._save_quietly(held, record):
            return
        try:
            self._publish_event(record, delivery)
        except DeliveryLost:
            pass  # the redelivered copy fails the same way and publishes it
        except PublishFailed:
            logger.exception("could not publish job.failed", extra={"job_id": record.job_id})

    def _dead_letter(
        self, delivery: Delivery, job_id: str | None, reason: str, error: str, attempts: int
    ) -> Outcome:
        headers = {
            **delivery.headers,
            Header.FAILURE_REASON: reason,
            Header.FAILURE_ERROR: error[:1000],
            Header.ATTEMPTS_MADE: attempts,
            Header.FAILED_AT: utcnow().isoformat(),
            Header.WORKER: self._worker,
        }
        if job_id:
            headers[Header.JOB_ID] = job_id
        try:
            self._publisher.publish(
                DEAD_LETTER_EXCHANGE, "", delivery.body,
                message_id=delivery.properties.message_id, headers=headers,
                content_type=delivery.properties.content_type or "application/octet-stream",
                cancel=delivery.lost,
            )
        except DeliveryLost:
            return Outcome.ABANDON
        except PublishFailed:
            # The work queue's own dead-letter exchange still takes it, without our headers.
            return Outcome.DEAD_LETTER
        return Outcome.ACK

    def _publish_event(self, record: JobRecord, delivery: Delivery) -> None:
        # Not once the delivery is lost: the redelivered copy publishes it (and only it).
        publish_event(self._publisher, record, cancel=delivery.lost)

    def _save_and_announce(self, held: Held, record: JobRecord, delivery: Delivery) -> None:
        self._write(held, record)
        self._announce(record, delivery)

    def _announce(self, record: JobRecord, delivery: Delivery) -> None:
        """A change on the way (processing, retrying) for the live streams: one lost is no harm,
        a stream catches up from the record, so it never fails the job."""
        try:
            self._publish_event(record, delivery)
        except (PublishFailed, DeliveryLost) as exc:
            job_logger(logger, record.job_id).warning("status %s not announced: %s", record.status.value, exc)

    def _save_quietly(self, held: Held, record: JobRecord) -> bool:
        """Whether the record was written: not if storage failed, nor over a cancel."""
        try:
            self._write(held, record)
        except StorageUnavailable:
            logger.exception("could not write the job record", extra={"job_id": record.job_id})
            return False
        except CancelledMeanwhile:
            job_logger(logger, record.job_id).info("cancelled by its client meanwhile; the record stays cancelled")
            return False
        return True


def _cancelled_meanwhile(writing: Future[None]) -> bool:
    """Whether the `processing` write found the job cancelled."""
    return writing.done() and isinstance(writing.exception(), CancelledMeanwhile)


def _header_int(headers: dict[str, Any], name: str) -> int:
    try:
        return max(0, int(headers.get(name, 0)))
    except (TypeError, ValueError):
        return 0


def _disagreement(message: JobMessage, record: JobRecord) -> list[str]:
    """The fields on which a job message says something else than the job's record."""
    fields = []
    if message.original_key != original_key(record.job_id) or record.original.key != original_key(record.job_id):
        fields.append("original_key")
    if list(message.operations) != list(record.operations):
        fields.append("operations")
    for name in ("output_format", "quality", "variants", "color", "metadata", "max_bytes", "callback_url"):
        if getattr(message, name) != getattr(record, name):
            fields.append(name)
    return fields


def _describe(message: JobMessage) -> str:
    if not message.variants:
        return ",".join(op.name for op in message.operations)
    return "; ".join(f"{v.name}: {','.join(op.name for op in v.operations)}" for v in message.variants)


def _summarise(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:3]
    ]
    return "; ".join(problems)
