"""Worker statistics as shared state: the snapshot each worker writes, and how readers add them up.

Each worker process keeps cumulative figures and writes them as one JSON object to the bucket,
under a key of its own (`stats/workers/<worker>-<start>-<pid>.json`), every `STATS_INTERVAL_S`.
A restarted worker writes a new key, so the sum over all keys only ever grows. Every API replica
and monitor reads the same objects, so they all report the same totals.

Histograms use one set of bucket bounds (`DURATION_BUCKETS_S`), recorded in every snapshot;
a snapshot written with other bounds is left out of the histogram sums rather than mis-added.
"""

import logging
import os
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from common.storage import ObjectMissing, ObjectStore

logger = logging.getLogger(__name__)

STATS_PREFIX = "stats/workers/"
# Upper bounds (seconds) of the processing-time and end-to-end latency histogram buckets.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
# Recent figures (utilization, throughput, percentiles) cover this much of each worker's past.
RECENT_WINDOW_S = 60.0
# A worker whose snapshot is older than this many of its intervals is no longer counted as active.
ACTIVE_INTERVALS = 3
UNKNOWN_OPERATIONS = "unknown"


def operations_label(names: Iterable[str]) -> str:
    """The label a job is counted under: its distinct operation names in first-use order.

    Bounded by the operations registry (a job "resize,watermark,resize" counts as "resize,watermark"),
    and one job is one count, so summing over the label gives the number of jobs.
    """
    return ",".join(dict.fromkeys(names)) or UNKNOWN_OPERATIONS


def bucket_index(value: float, bounds: Sequence[float] = DURATION_BUCKETS_S) -> int:
    """The bucket a value falls in: the first bound >= value, or len(bounds) for +Inf."""
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


def quantile(q: float, counts: Sequence[int], bounds: Sequence[float] = DURATION_BUCKETS_S) -> float | None:
    """The q-quantile of bucketed values, interpolated linearly inside its bucket.

    The same estimate as Prometheus' histogram_quantile: exact to within the width of the bucket
    the quantile falls in. A quantile in the +Inf bucket is reported as the largest finite bound.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if index == len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * max(rank - seen, 0) / count
        seen += count
    return bounds[-1]


class Histogram(BaseModel):
    """Per-bucket (not cumulative) counts; counts[-1] is the +Inf bucket."""

    bounds: list[float] = Field(default_factory=lambda: list(DURATION_BUCKETS_S))
    counts: list[int] = Field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))
    sum: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, value: float) -> None:
        self.counts[bucket_index(value, self.bounds)] += 1
        self.sum += value

    def add(self, other: "Histogram") -> bool:
        if other.bounds != self.bounds or len(other.counts) != len(self.counts):
            return False
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum
        return True

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, count of values <= it) pairs, ending with (+Inf, total)."""
        pairs, running = [], 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=False):
            running += count
            pairs.append((bound, running))
        return pairs

    def quantile(self, q: float) -> float | None:
        return quantile(q, self.counts, self.bounds)


class RecentWindow(BaseModel):
    """What a worker did in the last `window_s` seconds before its snapshot."""

    window_s: float = RECENT_WINDOW_S
    seconds: float = 0.0  # the part of the window the worker was running: min(window, uptime)
    busy_s: float = 0.0
    completed: int = 0
    failed: int = 0
    latency_counts: list[int] = Field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))
    processing_counts: list[int] = Field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))

    @property
    def utilization(self) -> float:
        return min(self.busy_s / self.seconds, 1.0) if self.seconds > 0 else 0.0


class WorkerSnapshot(BaseModel):
    schema_version: Literal[1] = 1
    worker: str
    instance: str
    host: str
    pid: int
    interval_s: float
    started_at: float  # epoch seconds
    updated_at: float
    stopped: bool = False
    busy: bool = False
    wall_s: float = 0.0
    busy_s: float = 0.0
    completed: dict[str, int] = Field(default_factory=dict)  # operations label -> jobs
    failed: dict[str, dict[str, int]] = Field(default_factory=dict)  # reason -> operations label -> jobs
    retried: int = 0
    cancelled: int = 0  # jobs this worker found cancelled (acked without work, or stopped mid-way)
    processing_s: Histogram = Field(default_factory=Histogram)
    latency_s: Histogram = Field(default_factory=Histogram)
    recent: RecentWindow = Field(default_factory=RecentWindow)

    def is_active(self, now: float) -> bool:
        return not self.stopped and now - self.updated_at <= ACTIVE_INTERVALS * self.interval_s


def instance_name(worker: str, started_at: float, pid: int | None = None) -> str:
    stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{worker}-{stamp}-{pid if pid is not None else os.getpid()}"


def snapshot_key(instance: str) -> str:
    return f"{STATS_PREFIX}{instance}.json"


def hostname() -> str:
    return socket.gethostname()


@dataclass
class WorkerView:
    worker: str
    instance: str
    active: bool
    stopped: bool
    busy: bool
    utilization: float
    busy_s: float
    wall_s: float
    completed: int
    failed: int
    updated_at: float


@dataclass
class Totals:
    """Every worker snapshot added up: what /metrics and /stats report for the whole system."""

    completed: Counter[str] = field(default_factory=Counter)  # operations label -> jobs
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operations label, reason) -> jobs
    retried: int = 0
    cancelled: int = 0
    busy_s: float = 0.0
    wall_s: float = 0.0
    processing_s: Histogram = field(default_factory=Histogram)
    latency_s: Histogram = field(default_factory=Histogram)
    recent: RecentWindow = field(default_factory=RecentWindow)  # seconds: the longest worker's part
    workers: list[WorkerView] = field(default_factory=list)
    skipped_histograms: int = 0

    @property
    def completed_total(self) -> int:
        return sum(self.completed.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def failed_by_reason(self) -> Counter[str]:
        by_reason: Counter[str] = Counter()
        for (_, reason), count in self.failed.items():
            by_reason[reason] += count
        return by_reason

    @property
    def active_workers(self) -> list[WorkerView]:
        return [w for w in self.workers if w.active]

    @property
    def utilization_avg(self) -> float | None:
        active = self.active_workers
        return sum(w.utilization for w in active) / len(active) if active else None

    @property
    def recent_throughput(self) -> float:
        """Jobs completed per second over the workers' recent window (shorter while they are new)."""
        return self.recent.completed / self.recent.seconds if self.recent.seconds > 0 else 0.0

    @property
    def recent_failure_rate(self) -> float:
        return self.recent.failed / self.recent.seconds if self.recent.seconds > 0 else 0.0


def aggregate(snapshots: Iterable[WorkerSnapshot], now: float) -> Totals:
    totals = Totals()
    for snap in snapshots:
        totals.completed.update(snap.completed)
        for reason, by_operations in snap.failed.items():
            for operations, count in by_operations.items():
                totals.failed[(operations, reason)] += count
        totals.retried += snap.retried
        totals.cancelled += snap.cancelled
        totals.busy_s += snap.busy_s
        totals.wall_s += snap.wall_s
        if not (totals.processing_s.add(snap.processing_s) and totals.latency_s.add(snap.latency_s)):
            totals.skipped_histograms += 1
        active = snap.is_active(now)
        # Recent figures of a worker that stopped a moment ago still describe the last minute.
        if now - snap.updated_at <= ACTIVE_INTERVALS * snap.interval_s:
            _add_recent(totals.recent, snap.recent)
        totals.workers.append(
            WorkerView(
                worker=snap.worker,
                instance=snap.instance,
                active=active,
                stopped=snap.stopped,
                busy=snap.busy and active,
                utilization=snap.recent.utilization,
                busy_s=snap.busy_s,
                wall_s=snap.wall_s,
                completed=sum(snap.completed.values()),
                failed=sum(sum(v.values()) for v in snap.failed.values()),
                updated_at=snap.updated_at,
            )
        )
    totals.workers.sort(key=lambda w: (not w.active, w.worker, w.instance))
    return totals


def _add_recent(total: RecentWindow, part: RecentWindow) -> None:
    if len(part.latency_counts) != len(total.latency_counts):
        return
    total.seconds = max(total.seconds, part.seconds)
    total.completed += part.completed
    total.failed += part.failed
    total.busy_s += part.busy_s
    total.latency_counts = [a + b for a, b in zip(total.latency_counts, part.latency_counts, strict=True)]
    total.processing_counts = [a + b for a, b in zip(total.processing_counts, part.processing_counts, strict=False)]


class SnapshotReader:
    """Reads every worker snapshot from the bucket.

    A stopped worker's last snapshot never changes, so it is read once and kept.
    """

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._final: dict[str, WorkerSnapshot] = {}

    def read_all(self) -> list[WorkerSnapshot]:
        snapshots = []
        for key in self._store.list(STATS_PREFIX):
            if key in self._final:
                snapshots.append(self._final[key])
                continue
            try:
                snap = WorkerSnapshot.model_validate_json(self._store.get(key))
            except ObjectMissing:
                continue
            except ValidationError as exc:
                logger.warning("ignoring unreadable worker snapshot %s: %s", key, exc.errors()[:1])
                continue
            if snap.stopped:
                self._final[key] = snap
            snapshots.append(snap)
        return snapshots
