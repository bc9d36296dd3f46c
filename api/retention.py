"""Stored images and job records expire: originals, results and records older than
RETENTION_DAYS are deleted, and with them cancel requests, idempotency claims and index entries.

Under compose, a MinIO lifecycle rule does this instead (deploy/minio/setup.sh) and the sweep is
off; the sweep here works with any S3 server, and is what the native stack (SeaweedFS) relies on. Every API
replica sweeps on its own; deleting an object twice is harmless. `python -m api.retention`
sweeps once.
"""

import logging
import threading
from datetime import UTC, datetime, timedelta

from common.settings import RetentionSettings
from common.storage import ObjectStore, StorageError

logger = logging.getLogger(__name__)

# A job's cancel request, idempotency claim and index entries are written when the job is, or later:
# they go by the same age.
EXPIRING_PREFIXES = ("jobs/", "originals/", "results/", "cancels/", "idempotency/", "index/")


def sweep(store: ObjectStore, older_than: datetime) -> int:
    """Delete every expiring object last modified before `older_than`; returns how many."""
    deleted = 0
    for prefix in EXPIRING_PREFIXES:
        for key, modified in store.list_dated(prefix):
            if modified is not None and modified < older_than:
                store.delete(key)
                deleted += 1
    return deleted


class RetentionSweeper:
    """Sweeps every `interval_s` on a background thread; a storage error waits for the next round."""

    def __init__(self, store: ObjectStore, retention: RetentionSettings) -> None:
        self._store = store
        self._retention = timedelta(days=retention.days)
        self._interval_s = retention.sweep_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        if self._retention > timedelta(0):
            self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def sweep_once(self) -> int:
        cutoff = datetime.now(UTC) - self._retention
        deleted = sweep(self._store, cutoff)
        if deleted:
            logger.info("retention: deleted %d objects last modified before %s", deleted, cutoff.isoformat())
        return deleted

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sweep_once()
            except StorageError as exc:
                logger.warning("retention sweep failed; next try in %.0f s: %s", self._interval_s, exc)


def main() -> None:
    from common.logs import configure_logging
    from common.settings import settings

    configure_logging(settings.logging, "retention")
    if settings.retention.days <= 0:
        print("RETENTION_DAYS is 0: nothing expires")
        return
    deleted = RetentionSweeper(ObjectStore(settings.storage), settings.retention).sweep_once()
    print(f"deleted {deleted} objects older than {settings.retention.days:g} days")


if __name__ == "__main__":
    main()
