"""Cancelling a job (DELETE /jobs/{id}, POST /jobs/{id}/cancel).

The cancel request is written first (workers poll it while they process), then the record, then
`job.cancelled` goes out (the notifier sends the webhook). Cancelling a cancelled job answers the
same again and changes nothing; a finished job cannot be cancelled.
"""

import logging

from api import errors
from api.service import find_job, unavailable
from common import amqp
from common.cancellation import CancelRequest, CancelRequests
from common.clients import Client
from common.jobs import JobRecord, JobStatus, JobStore, publish_event
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
    try:
        CancelRequests(store).request(request)
        record.cancel(request.requested_at)
        jobs.save(record)
    except StorageError as exc:
        raise unavailable("object storage", exc, ", the job was not cancelled") from exc
    try:
        publish_event(publisher, record)
    except amqp.PublishFailed as exc:
        logger.warning("job.cancelled not published (no webhook): %s", exc, extra={"job_id": job_id})
    logger.info("cancelled by %s", client.label, extra={"job_id": job_id})
    return record
