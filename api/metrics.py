"""What GET /metrics exports, in the Prometheus text format.

Three kinds of figures, which add up differently across API replicas:
- from the worker snapshots in the bucket (jobs completed / failed / retried, the processing and
  latency histograms, worker utilization): global, the same on every replica;
- from the RabbitMQ management API (queues): global, the same on every replica;
- this replica's own upload counters (`imgpipe_jobs_submitted_total`,
  `imgpipe_uploads_rejected_total`): local, so Prometheus sums them over replicas.
Global figures come from a custom collector that reads the shared state at scrape time (cached
briefly), so the numbers are never kept in API memory.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.observability.management import BrokerStats
from common.observability.stats import Histogram, Totals, operations_label

disable_created_metrics()  # no `_created` series beside the counters

# Upload refusals by status code: the API's answers name the detail, the metric the kind.
REJECT_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def reject_reason(status: int) -> str:
    return REJECT_REASONS.get(status, "server_error" if status >= 500 else "client_error")


class UploadCounters:
    """This replica's uploads: accepted (jobs submitted, by operations) and refused (by reason)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.submitted = Counter(
            "imgpipe_jobs_submitted", "Jobs accepted by this API replica, by operations (sum over replicas)",
            ["operations"], registry=registry,
        )
        self.rejected = Counter(
            "imgpipe_uploads_rejected", "Uploads refused by this API replica, by reason and HTTP status "
            "(sum over replicas)", ["reason", "status"], registry=registry,
        )

    def accepted(self, operation_names: list[str]) -> None:
        self.submitted.labels(operations=operations_label(operation_names)).inc()

    def refused(self, status: int) -> None:
        self.rejected.labels(reason=reject_reason(status), status=str(status)).inc()

    def as_dict(self) -> dict[str, Any]:
        submitted = _values(self.submitted, "operations")
        rejected = _values(self.rejected, "reason", "status")
        return {
            "submitted": int(sum(submitted.values())),
            "submitted_by_operations": submitted,
            "rejected": int(sum(rejected.values())),
            "rejected_by_reason": rejected,
        }


def _values(counter: Counter, *labels: str) -> dict[str, int]:
    return {
        "/".join(sample.labels[label] for label in labels): int(sample.value)
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


class UploadMetrics:
    """Counts every answer to POST /upload, including the size limit's 413 (so add it outermost)."""

    def __init__(
        self, app: ASGIApp, counters: Callable[[Scope], UploadCounters | None], path: str = "/upload"
    ) -> None:
        self.app = app
        self.counters = counters
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            counters = self.counters(scope)
            if counters is not None:
                if status == 202:
                    # Left by the upload route: the operations it accepted.
                    counters.accepted(scope.get("state", {}).get("accepted_operations", []))
                else:
                    counters.refused(status or 500)


@dataclass
class WorkerStatsView:
    """The worker snapshots as last read: `totals` is None until a first read succeeds."""

    totals: Totals | None
    available: bool
    error: str | None
    read_at: float | None


class SystemCollector(Collector):
    """Global figures, read from the shared state at scrape time."""

    def __init__(self, workers: Callable[[], WorkerStatsView], broker: Callable[[], BrokerStats]) -> None:
        self._workers = workers
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        view = self._workers()
        yield GaugeMetricFamily(
            "imgpipe_worker_stats_up", "1 if the worker snapshots could be read from object storage",
            value=1 if view.available else 0,
        )
        if view.totals is not None:
            yield from worker_families(view.totals)
        yield from broker_families(self._broker())


def worker_families(totals: Totals) -> Iterator[Metric]:
    completed = CounterMetricFamily(
        "imgpipe_jobs_completed", "Jobs completed, by operations (global: do not sum over API replicas)",
        labels=["operations"],
    )
    for operations, count in sorted(totals.completed.items()):
        completed.add_metric([operations], count)
    yield completed

    failed = CounterMetricFamily(
        "imgpipe_jobs_failed", "Jobs failed for good, by operations and reason (global)",
        labels=["operations", "reason"],
    )
    for (operations, reason), count in sorted(totals.failed.items()):
        failed.add_metric([operations, reason], count)
    yield failed

    yield CounterMetricFamily(
        "imgpipe_job_retries", "Transient failures sent to a retry queue (global)", value=totals.retried
    )
    yield CounterMetricFamily(
        "imgpipe_jobs_cancelled", "Jobs cancelled by their clients, as the workers ended them (global)",
        value=totals.cancelled,
    )
    yield _histogram(
        "imgpipe_job_processing_seconds",
        "Processing time of completed jobs: started by a worker to finished (global)", totals.processing_s,
    )
    yield _histogram(
        "imgpipe_job_latency_seconds",
        "End-to-end latency of completed jobs: upload accepted to result stored (global)", totals.latency_s,
    )
    yield GaugeMetricFamily(
        "imgpipe_workers_active", "Workers whose snapshot is recent (global)",
        value=len(totals.active_workers),
    )
    utilization = GaugeMetricFamily(
        "imgpipe_worker_utilization",
        "Fraction of the last 60 s each active worker spent processing jobs (global)", labels=["worker"],
    )
    for worker in {w.worker: w for w in reversed(totals.active_workers)}.values():
        utilization.add_metric([worker.worker], worker.utilization)
    yield utilization
    yield GaugeMetricFamily(
        "imgpipe_worker_utilization_avg",
        "Average of imgpipe_worker_utilization over active workers; 0 when none is active (global)",
        value=totals.utilization_avg or 0.0,
    )
    yield CounterMetricFamily(
        "imgpipe_worker_busy_seconds", "Seconds workers spent processing, all workers ever (global)",
        value=totals.busy_s,
    )
    yield CounterMetricFamily(
        "imgpipe_worker_wall_seconds", "Seconds workers ran, all workers ever (global); "
        "rate(busy) / rate(wall) is the utilization over any range", value=totals.wall_s,
    )


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation,
        buckets=[(floatToGoString(bound), count) for bound, count in histogram.cumulative()],
        sum_value=histogram.sum,
    )


_QUEUE_GAUGES = (
    ("imgpipe_queue_messages_ready", "Messages ready for delivery", "ready"),
    ("imgpipe_queue_messages_unacked", "Messages delivered and not yet acknowledged", "unacked"),
    ("imgpipe_queue_consumers", "Consumers subscribed", "consumers"),
    ("imgpipe_queue_publish_rate", "Messages published to the queue per second (sampled)", "publish_rate"),
    ("imgpipe_queue_deliver_rate", "Messages delivered per second (broker-sampled)", "deliver_rate"),
    ("imgpipe_queue_ack_rate", "Messages acknowledged per second (broker-sampled)", "ack_rate"),
)


def broker_families(broker: BrokerStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "imgpipe_broker_up", "1 if the RabbitMQ management API answered", value=1 if broker.available else 0
    )
    if not broker.available:
        return
    exists = GaugeMetricFamily("imgpipe_queue_exists", "1 if the queue exists", labels=["queue", "role"])
    for queue in broker.queues:
        exists.add_metric([queue.name, queue.role], 1 if queue.exists else 0)
    yield exists
    for name, documentation, attribute in _QUEUE_GAUGES:
        family = GaugeMetricFamily(name, f"{documentation} (RabbitMQ; global)", labels=["queue", "role"])
        for queue in broker.queues:
            if queue.exists:
                family.add_metric([queue.name, queue.role], getattr(queue, attribute))
        yield family
    utilisation = GaugeMetricFamily(
        "imgpipe_queue_consumer_utilisation",
        "RabbitMQ's consumer utilisation: fraction of time the queue could deliver to a consumer at once "
        "(not worker busyness)", labels=["queue", "role"],
    )
    for queue in broker.queues:
        if queue.exists and queue.consumer_utilisation is not None:
            utilisation.add_metric([queue.name, queue.role], queue.consumer_utilisation)
    yield utilisation


def build_registry(
    workers: Callable[[], WorkerStatsView], broker: Callable[[], BrokerStats]
) -> tuple[CollectorRegistry, UploadCounters]:
    registry = CollectorRegistry()
    uploads = UploadCounters(registry)
    registry.register(SystemCollector(workers, broker))
    return registry, uploads
