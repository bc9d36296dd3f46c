"""Cancel requests: `cancels/<job id>`, written only by the API when a client cancels a job.

The API writes the job's record `cancelled` first (over the version it read, so it never undoes a
completion), then this request. The record decides the job's end: a worker's later record write
finds it changed and stops (worker/handler.py). The request is what a worker running the job polls
while the image is processed, to stop it early; it holds when the cancel was asked, so every record
that says `cancelled` carries the same time (and the notifier one webhook).
"""

from datetime import datetime

from pydantic import BaseModel

from common.ports import ObjectStorage
from common.storage import ObjectMissing

CANCELS_PREFIX = "cancels/"


class CancelRequest(BaseModel):
    job_id: str
    requested_at: datetime
    requested_by: str | None = None


def cancel_key(job_id: str) -> str:
    return f"{CANCELS_PREFIX}{job_id}"


class CancelRequests:
    def __init__(self, store: ObjectStorage) -> None:
        self._store = store

    def request(self, cancel: CancelRequest) -> None:
        self._store.put(cancel_key(cancel.job_id), cancel.model_dump_json().encode(), content_type="application/json")

    def find(self, job_id: str) -> CancelRequest | None:
        """The job's cancel request, if it has one (a storage error is the caller's to handle)."""
        try:
            data = self._store.get(cancel_key(job_id))
        except ObjectMissing:
            return None
        return CancelRequest.model_validate_json(data)
