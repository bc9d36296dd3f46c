"""Cancelling a job (DELETE /jobs/{id}, POST /jobs/{id}/cancel).

The record is written `cancelled` only over the version read (`JobStore.update`): a worker that
completes the job at the same moment writes over the version it holds the same way, so exactly one of
the two lands, and the 200 or the 409 tells the client which. Then the cancel request (what a worker
running the job polls, to stop its image process early), then `job.cancelled` goes out (the notifier
sends the webhook). Cancelling a cancelled job answers the same again and changes nothing; a finished
job cannot be cancelled.
"""

import logging

from api import errors
from api.service import find_job, unavailable
from common import amqp
from common.cancellation import CancelRequest, CancelRequests
from common.clients import Client
from common.jobs import FINAL, JobRecord, JobStatus, JobStore, publish_event
from common.messages import utcnow
from common.ports import MessagePublisher, ObjectStorage
from common.storage import StorageError

logger = logging.getLogger("api")


def cancel_job(
    job_id: str, client: Client, jobs: JobStore, store: ObjectStorage, publisher: MessagePublisher
) -> JobRecord:
    record = find_job(job_id, client, jobs)
    if record.status is JobStatus.CANCELLED:
        return record
    if record.finished:
        raise errors.AlreadyFinished(
            f"job {job_id} is {record.status}: only queued, processing or retrying jobs can be cancelled"
        )
    request = CancelRequest(job_id=job_id, requested_at=utcnow(), requested_by=client.name)
    outcome: list[JobStatus] = []  # the status found by the read the write went over

    def cancel(current: JobRecord) -> bool:
        outcome[:] = [current.status]
        if current.finished:
            return False
        current.cancel(request.requested_at)
        return True

    try:
        updated = jobs.update(job_id, cancel)
    except StorageError as exc:
        raise unavailable("object storage", exc, ", the job was not cancelled") from exc
    if updated is None:
        raise errors.NotFound(f"no job {job_id[:64]!r}")
    if outcome[0] is JobStatus.CANCELLED:
        return updated
    if outcome[0] in FINAL:
        raise errors.AlreadyFinished(
            f"job {job_id} is {updated.status}: only queued, processing or retrying jobs can be cancelled"
        )
    record = updated
    try:
        CancelRequests(store).request(request)
    except StorageError as exc:
        # The record says cancelled, which is what counts: a running job just runs to its end and
        # then finds it so, storing nothing.
        logger.warning("cancel request not written (%s); a running job is not stopped early", exc,
                       extra={"job_id": job_id})
    try:
        publish_event(publisher, record)
    except amqp.PublishFailed as exc:
        logger.warning("job.cancelled not published (no webhook): %s", exc, extra={"job_id": job_id})
    logger.info("cancelled by %s", client.label, extra={"job_id": job_id})
    return record
