"""Idempotent uploads: `Idempotency-Key` on POST /upload (Stripe's and the IETF draft's semantics).

The first request with a key claims `idempotency/<digest of client and key>` with a conditional
create (`If-None-Match: *`), so of concurrent duplicates exactly one goes on to make the job. The
claim holds a fingerprint of the request (the digest of every form field, files by their bytes) and,
once the job is queued, the answer that was sent. A later request with the same key and the same
fingerprint gets that answer again, marked `Idempotent-Replayed: true`, and nothing is stored or
queued; with another fingerprint it is refused (422). One that arrives while the first is still in
flight waits for its answer a little, then gets 409. A request that does not make a job (refused,
or the job could not be queued) releases the claim; after IDEMPOTENCY_TTL_S the key makes a new job.
Keys are scoped per client: two clients using the same key make two jobs.
"""

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile

from api import errors
from api.service import unavailable
from common.clients import Client
from common.messages import utcnow
from common.ports import ObjectStorage
from common.storage import ObjectMissing, StorageError

logger = logging.getLogger("api")

HEADER = "Idempotency-Key"
IDEMPOTENCY_PREFIX = "idempotency/"
KEY_MAX_LENGTH = 255
KEY_PATTERN = r"^[ -~]+$"  # printable ASCII
# How long a duplicate waits for the first request's answer before it is told to come back.
IN_FLIGHT_WAIT_S = 10.0
IN_FLIGHT_POLL_S = 0.1
RETRY_AFTER_IN_FLIGHT_S = 1
_CHUNK = 1024 * 1024


class Answer(BaseModel):
    status_code: int
    body: dict[str, Any]
    location: str


class ClaimRecord(BaseModel):
    fingerprint: str
    created_at: datetime
    answer: Answer | None = None


def check_key(key: str) -> str:
    if not key or len(key) > KEY_MAX_LENGTH:
        raise errors.InvalidInput(
            f"{HEADER}: {len(key)} characters; keys are 1 to {KEY_MAX_LENGTH} characters", field=HEADER
        )
    if not all(" " <= char <= "~" for char in key):
        raise errors.InvalidInput(f"{HEADER}: only printable ASCII characters are allowed", field=HEADER)
    return key


def fingerprint(form: FormData) -> str:
    """Every field of the request, files by the digest of their bytes (read, then rewound)."""
    fields = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            digest = hashlib.sha256()
            value.file.seek(0)
            while chunk := value.file.read(_CHUNK):
                digest.update(chunk)
            value.file.seek(0)
            fields.append([name, "file", value.filename or "", digest.hexdigest()])
        else:
            fields.append([name, "text", value])
    return hashlib.sha256(json.dumps(sorted(fields)).encode()).hexdigest()


def claim_key(client: Client, key: str) -> str:
    scope = f"client:{client.name}" if client.name is not None else "anonymous"
    return IDEMPOTENCY_PREFIX + hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()


@dataclass
class Claim:
    """This request's claim on its key: it either makes the job (`complete`) or gives the key back."""

    store: ObjectStorage
    key: str
    record: ClaimRecord

    def complete(self, answer: Answer) -> None:
        self.record.answer = answer
        try:
            self.store.put(self.key, self.record.model_dump_json().encode(), content_type="application/json")
        except StorageError:
            # The job is queued; a retry with this key waits, then gets 409 until the key expires.
            logger.exception("the idempotency claim could not be completed")

    def release(self) -> None:
        try:
            self.store.delete(self.key)
        except StorageError:
            logger.exception("the idempotency claim could not be released")


def begin(
    store: ObjectStorage, client: Client, key: str, form: FormData, ttl_s: int
) -> Claim | Answer:
    """The claim this request holds, or the answer an earlier request with the key was given."""
    name = claim_key(client, check_key(key))
    ours = ClaimRecord(fingerprint=fingerprint(form), created_at=utcnow())
    deadline = time.monotonic() + IN_FLIGHT_WAIT_S
    try:
        while True:
            if store.create(name, ours.model_dump_json().encode(), content_type="application/json"):
                return Claim(store, name, ours)
            theirs = _read(store, name)
            if theirs is not None and theirs.created_at + timedelta(seconds=ttl_s) < utcnow():
                logger.info("idempotency key expired; a new job is made for it")
                store.delete(name)
                theirs = None
            if theirs is not None:
                if theirs.fingerprint != ours.fingerprint:
                    raise errors.InvalidInput(
                        f"{HEADER}: this key was used for another request (a different file or fields) in "
                        f"the last {ttl_s} s; use a new key for a new request",
                        field=HEADER,
                    )
                if theirs.answer is not None:
                    return theirs.answer
            if time.monotonic() > deadline:
                raise errors.RequestInFlight(
                    f"a request with this {HEADER} is still being handled; try again shortly",
                    retry_after_s=RETRY_AFTER_IN_FLIGHT_S,
                )
            if theirs is not None:
                time.sleep(IN_FLIGHT_POLL_S)  # its first request is still making the job
    except StorageError as exc:
        raise unavailable("object storage", exc, ", the job was not queued") from exc


async def raw_form(request: Request) -> FormData:
    """The upload's form as parsed for the route (Starlette keeps it): what the fingerprint covers."""
    return await request.form()


def replay(answer: Answer) -> JSONResponse:
    return JSONResponse(
        answer.body, status_code=answer.status_code,
        headers={"Location": answer.location, "Idempotent-Replayed": "true"},
    )


@contextmanager
def released_on_error(claim: Claim | None) -> Iterator[None]:
    """A request that makes no job gives its key back, so a corrected retry can use it."""
    try:
        yield
    except BaseException:
        if claim is not None:
            claim.release()
        raise


def _read(store: ObjectStorage, name: str) -> ClaimRecord | None:
    try:
        return ClaimRecord.model_validate_json(store.get(name))
    except ObjectMissing:
        return None
