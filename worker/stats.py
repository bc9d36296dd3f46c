"""One worker process's statistics, written to the bucket as a snapshot (see common/observability/stats.py).

The handler reports outcomes (`completed`, `failed`, `retried`, `cancelled`); `track` wraps the handler to
measure busy time. Snapshots are written by a background thread every `interval_s`, and sooner
after a job when the last write is older than that, so fast jobs cost no storage round trip each.
Writing never fails a job: storage errors are logged and the next write tries again. A process
killed without warning loses at most its last interval of figures.
"""

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import datetime

from common.amqp import Delivery, Handler, Outcome
from common.jobs import JobRecord
from common.observability.stats import (
    RECENT_WINDOW_S,
    Histogram,
    RecentWindow,
    WorkerSnapshot,
    bucket_index,
    hostname,
    instance_name,
    operations_label,
    snapshot_key,
)
from common.operations import Operation
from common.ports import ObjectStorage

logger = logging.getLogger(__name__)

CRASHED = "handler_crashed"


class WorkerStats:
    def __init__(
        self,
        worker: str,
        store: ObjectStorage,
        interval_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._interval = interval_s
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._started_mono = monotonic()
        self._started_wall = wall()
        self.instance = instance_name(worker, self._started_wall)
        self.key = snapshot_key(self.instance)
        self._worker = worker
        self._pid = os.getpid()
        self._host = hostname()

        self._busy_since: float | None = None
        self._busy_total = 0.0
        self._busy_periods: deque[tuple[float, float]] = deque()  # (start, end), monotonic
        # (finished at, completed?, latency bucket, processing bucket) for the recent window
        self._recent_jobs: deque[tuple[float, bool, int, int]] = deque()
        self._completed: Counter[str] = Counter()
        self._failed: dict[str, Counter[str]] = {}
        self._retried = 0
        self._cancelled = 0
        self._processing = Histogram()
        self._latency = Histogram()
        self._stopped = False

        self._last_write = float("-inf")
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._write_periodically, name="stats-writer", daemon=True)
        self._write_failing = False

    # --- what the handler reports -----------------------------------------------------------------

    def completed(self, record: JobRecord) -> None:
        now = self._monotonic()
        processing = _seconds(record.started_at, record.finished_at)
        latency = _seconds(record.created_at, record.finished_at)
        with self._lock:
            self._completed[operations_label(op.name for op in record.operations)] += 1
            self._processing.observe(processing)
            self._latency.observe(latency)
            self._recent_jobs.append((now, True, bucket_index(latency), bucket_index(processing)))

    def failed(self, operations: Sequence[Operation] | None, reason: str) -> None:
        label = operations_label(op.name for op in operations or ())
        with self._lock:
            self._failed.setdefault(reason, Counter())[label] += 1
            self._recent_jobs.append((self._monotonic(), False, -1, -1))

    def retried(self) -> None:
        with self._lock:
            self._retried += 1

    def cancelled(self) -> None:
        with self._lock:
            self._cancelled += 1

    def track(self, handler: Handler) -> Handler:
        """The handler, timed: the time inside it is the worker's busy time."""

        def tracked(delivery: Delivery) -> Outcome:
            with self._lock:
                self._busy_since = self._monotonic()
            try:
                return handler(delivery)
            except Exception:
                self.failed(None, CRASHED)
                raise
            finally:
                with self._lock:
                    end = self._monotonic()
                    start, self._busy_since = self._busy_since or end, None
                    self._busy_total += end - start
                    self._busy_periods.append((start, end))
                if end - self._last_write >= self._interval:
                    self._wake.set()

        return tracked

    # --- snapshots --------------------------------------------------------------------------------

    def snapshot(self) -> WorkerSnapshot:
        with self._lock:
            now = self._monotonic()
            window_start = now - RECENT_WINDOW_S
            while self._busy_periods and self._busy_periods[0][1] < window_start:
                self._busy_periods.popleft()
            while self._recent_jobs and self._recent_jobs[0][0] < window_start:
                self._recent_jobs.popleft()
            busy_recent = sum(end - max(start, window_start) for start, end in self._busy_periods)
            busy_total = self._busy_total
            if self._busy_since is not None:
                busy_recent += now - max(self._busy_since, window_start)
                busy_total += now - self._busy_since
            recent = RecentWindow(seconds=min(RECENT_WINDOW_S, now - self._started_mono), busy_s=busy_recent)
            for _, ok, latency_index, processing_index in self._recent_jobs:
                if ok:
                    recent.completed += 1
                    recent.latency_counts[latency_index] += 1
                    recent.processing_counts[processing_index] += 1
                else:
                    recent.failed += 1
            return WorkerSnapshot(
                worker=self._worker,
                instance=self.instance,
                host=self._host,
                pid=self._pid,
                interval_s=self._interval,
                started_at=self._started_wall,
                updated_at=self._wall(),
                stopped=self._stopped,
                busy=self._busy_since is not None,
                wall_s=now - self._started_mono,
                busy_s=busy_total,
                completed=dict(self._completed),
                failed={reason: dict(counts) for reason, counts in self._failed.items()},
                retried=self._retried,
                cancelled=self._cancelled,
                processing_s=self._processing.model_copy(deep=True),
                latency_s=self._latency.model_copy(deep=True),
                recent=recent,
            )

    def write(self) -> bool:
        """Writes the snapshot now; never raises. True if it was stored."""
        with self._write_lock:
            self._last_write = self._monotonic()
            try:
                body = self.snapshot().model_dump_json().encode()
                self._store.put(self.key, body, content_type="application/json")
            except Exception as exc:  # statistics must never stop the worker
                if not self._write_failing:
                    logger.warning("could not write worker statistics to %s: %s", self.key, exc)
                self._write_failing = True
                return False
            if self._write_failing:
                logger.info("worker statistics written again to %s", self.key)
            self._write_failing = False
            return True

    def start(self) -> None:
        self.write()
        self._writer.start()

    def close(self) -> None:
        """Stops the writer and stores the final snapshot, marked stopped."""
        self._closing.set()
        self._wake.set()
        if self._writer.is_alive():
            self._writer.join(timeout=self._interval + 15)
        with self._lock:
            self._stopped = True
        self.write()

    def _write_periodically(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closing.is_set():
                return
            self.write()


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max((end - start).total_seconds(), 0.0)
