"""The index GET /jobs lists from: an empty object per job and lister, written at upload.

`index/<lister>/<reverse time>-<job id>`: the lister is a digest of the owning client (so a key
never spells a client's name) or `all` (what an operator lists); the reverse time (milliseconds
before a far date) makes S3's key order newest first, and the job id keeps equal times apart.

Jobs stored before the index existed have no entries: `python -m api.job_index` (or `reindex`)
writes the missing ones from the records, and may be run again at any time.
"""

import hashlib
import logging
import re

from common.jobs import JobRecord, JobStore
from common.ports import ObjectStorage

logger = logging.getLogger(__name__)

INDEX_PREFIX = "index/"
EVERY_JOB = f"{INDEX_PREFIX}all/"
_FAR_FUTURE_MS = 10**14
ENTRY_PATTERN = re.compile(r"^(\d{14})-([0-9a-f]{32})$")


def owner_prefix(owner: str | None) -> str:
    identity = f"client:{owner}" if owner is not None else "anonymous"
    return f"{INDEX_PREFIX}{hashlib.sha256(identity.encode()).hexdigest()[:32]}/"


def entry_name(record: JobRecord) -> str:
    created_ms = int(record.created_at.timestamp() * 1000)
    return f"{_FAR_FUTURE_MS - created_ms:014d}-{record.job_id}"


def index_keys(record: JobRecord) -> list[str]:
    return [prefix + entry_name(record) for prefix in (owner_prefix(record.owner), EVERY_JOB)]


def add_to_index(store: ObjectStorage, record: JobRecord) -> None:
    for key in index_keys(record):
        add_entry(store, key)


def add_entry(store: ObjectStorage, key: str) -> None:
    store.put(key, b"", content_type="application/octet-stream")


def remove_from_index(store: ObjectStorage, record: JobRecord) -> None:
    for key in index_keys(record):
        store.delete(key)


def reindex(store: ObjectStorage, jobs: JobStore) -> int:
    """Index entries for every job that has a record but is not in the index; how many jobs got them."""
    indexed = set()
    for key, _ in store.list_dated(EVERY_JOB):
        match = ENTRY_PATTERN.fullmatch(key.removeprefix(EVERY_JOB))
        if match:
            indexed.add(match[2])
    added = 0
    for job_id, _ in jobs.list_dated():
        if job_id in indexed:
            continue
        try:
            record = jobs.get(job_id)
        except ValueError:
            logger.warning("job record %s cannot be read; not indexed", job_id)
            continue
        if record is not None:
            add_to_index(store, record)
            added += 1
    return added


def main() -> None:
    from common.logs import configure_logging
    from common.settings import settings
    from common.storage import ObjectStore

    configure_logging(settings.logging, "reindex")
    store = ObjectStore(settings.storage)
    print(f"indexed {reindex(store, JobStore(store))} jobs that had no index entries")


if __name__ == "__main__":
    main()
