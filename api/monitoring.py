"""The system's figures for GET /metrics and GET /stats, read from the shared state.

Worker snapshots come from the bucket and queue figures from the RabbitMQ management API; each
is cached for `CACHE_TTL_S`, so a burst of scrapes costs one read. When a source is down, the
last good reading is kept (counters never drop back to zero) and the answer says it is stale.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from prometheus_client import generate_latest
from starlette.types import Scope

from api.metrics import UploadCounters, WorkerStatsView, build_registry
from common.observability.management import BrokerStats, ManagementApi, read_queues
from common.observability.stats import RECENT_WINDOW_S, Histogram, SnapshotReader, Totals, aggregate, quantile
from common.settings import BrokerSettings
from common.storage import ObjectStore, StorageError
from common.topology import WORK_QUEUE

logger = logging.getLogger("api")

CACHE_TTL_S = 2.0
QUANTILES = (0.5, 0.95, 0.99)

T = TypeVar("T")


class _Cached(Generic[T]):
    """One reading shared by every caller for `ttl` seconds; one reader at a time."""

    def __init__(self, load: Callable[[], T], ttl: float) -> None:
        self._load = load
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = float("-inf")

    def get(self) -> T:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._ttl:
                self._value = self._load()
                self._at = time.monotonic()
            return self._value


class Monitoring:
    def __init__(self, broker: BrokerSettings, instance: str, store: ObjectStore, ttl_s: float = CACHE_TTL_S) -> None:
        self._instance = instance
        self._reader = SnapshotReader(store)
        self._last_totals: Totals | None = None
        self._last_read: float | None = None
        self._broker_client = ManagementApi.from_settings(broker, timeout=3.0)
        self._workers = _Cached(self._read_workers, ttl_s)
        self._broker = _Cached(lambda: read_queues(broker, self._broker_client), ttl_s)
        self.registry, self.uploads = build_registry(self.worker_stats, self.broker_stats)

    def worker_stats(self) -> WorkerStatsView:
        return self._workers.get()

    def broker_stats(self) -> BrokerStats:
        return self._broker.get()

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def close(self) -> None:
        self._broker_client.close()

    def _read_workers(self) -> WorkerStatsView:
        try:
            snapshots = self._reader.read_all()
        except StorageError as exc:
            logger.warning("worker statistics unavailable: %s", exc)
            return WorkerStatsView(self._last_totals, False, str(exc), self._last_read)
        self._last_totals, self._last_read = aggregate(snapshots, time.time()), time.time()
        return WorkerStatsView(self._last_totals, True, None, self._last_read)

    def stats(self) -> dict[str, Any]:
        """The same picture as /metrics, as JSON."""
        view, broker = self.worker_stats(), self.broker_stats()
        totals = view.totals or Totals()
        work = broker.queue(WORK_QUEUE) if broker.available else None
        return {
            "generated_at": _iso(time.time()),
            "jobs": {
                "submitted_here": self.uploads.as_dict()["submitted"],
                "completed": totals.completed_total,
                "failed": totals.failed_total,
                "retried": totals.retried,
                "cancelled": totals.cancelled,
                "completed_by_operations": dict(sorted(totals.completed.items())),
                "failed_by_reason": dict(sorted(totals.failed_by_reason.items())),
                "failed_by_operations": _by_operations(totals),
            },
            "throughput": {
                "window_s": round(totals.recent.seconds, 1),
                "completed_per_s": round(totals.recent_throughput, 4),
                "failed_per_s": round(totals.recent_failure_rate, 4),
                "completed": totals.recent.completed,
                "failed": totals.recent.failed,
            },
            "latency_s": _histogram(totals.latency_s, totals.recent.latency_counts),
            "processing_s": _histogram(totals.processing_s, totals.recent.processing_counts),
            "workers": {
                "active": len(totals.active_workers),
                "known": len(totals.workers),
                "utilization_avg": _round(totals.utilization_avg),
                "busy_s": round(totals.busy_s, 3),
                "wall_s": round(totals.wall_s, 3),
                "rabbitmq_consumer_utilisation": work.consumer_utilisation if work else None,
                "list": [
                    {
                        "worker": w.worker,
                        "instance": w.instance,
                        "active": w.active,
                        "stopped": w.stopped,
                        "busy": w.busy,
                        "utilization": round(w.utilization, 4),
                        "busy_s": round(w.busy_s, 3),
                        "wall_s": round(w.wall_s, 3),
                        "completed": w.completed,
                        "failed": w.failed,
                        "updated_at": _iso(w.updated_at),
                    }
                    for w in totals.workers
                ],
            },
            "queues": broker.as_dict(),
            "api": {"instance": self._instance, **self.uploads.as_dict()},
            "sources": {
                "worker_stats": {
                    "available": view.available,
                    "error": view.error,
                    "read_at": _iso(view.read_at) if view.read_at else None,
                },
                "broker": {
                    "available": broker.available,
                    "error": broker.error,
                    "read_at": _iso(broker.fetched_at),
                },
            },
        }


def _by_operations(totals: Totals) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (operations, _), count in totals.failed.items():
        counts[operations] = counts.get(operations, 0) + count
    return dict(sorted(counts.items()))


def _histogram(histogram: Histogram, recent_counts: list[int]) -> dict[str, Any]:
    """All-time count, sum, mean, percentiles and cumulative buckets, and percentiles of the last minute."""
    count = histogram.count
    return {
        "count": count,
        "sum": round(histogram.sum, 4),
        "mean": round(histogram.sum / count, 4) if count else None,
        **{f"p{round(q * 100)}": _round(histogram.quantile(q)) for q in QUANTILES},
        "buckets": {_le(bound): n for bound, n in histogram.cumulative()},
        "recent": {
            "window_s": RECENT_WINDOW_S,
            "count": sum(recent_counts),
            **{f"p{round(q * 100)}": _round(quantile(q, recent_counts, histogram.bounds)) for q in QUANTILES},
        },
    }


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def upload_counters(scope: Scope) -> UploadCounters | None:
    """This replica's upload counters, for the UploadMetrics middleware (None before start-up)."""
    monitoring = getattr(scope["app"].state, "monitoring", None)
    return monitoring.uploads if monitoring is not None else None
