"""Worker statistics: the recorder, snapshot merging, percentiles from buckets, the monitors' maths."""

from datetime import UTC, datetime, timedelta

import pytest

from common.jobs import JobRecord, JobStatus, OriginalInfo
from common.observability.stats import (
    DURATION_BUCKETS_S,
    Histogram,
    WorkerSnapshot,
    aggregate,
    bucket_index,
    operations_label,
    quantile,
)
from common.operations import parse_operations
from monitoring.performance_monitor import bucket_counts, window_percentiles
from tests.support.memory import MemoryObjectStore
from worker.stats import WorkerStats


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(operations: str, created_ago_s: float, processing_s: float) -> JobRecord:
    finished = datetime(2030, 1, 1, tzinfo=UTC)
    return JobRecord(
        job_id="0" * 32, status=JobStatus.COMPLETED, operations=parse_operations(operations, 20), quality=85,
        original=OriginalInfo(key="originals/x", format="jpeg", width=1, height=1, bytes=1),
        created_at=finished - timedelta(seconds=created_ago_s),
        started_at=finished - timedelta(seconds=processing_s), finished_at=finished,
    )


def snapshot(worker: str, updated_at: float, **fields) -> WorkerSnapshot:
    return WorkerSnapshot(
        worker=worker, instance=f"{worker}-x", host="h", pid=1, interval_s=5, started_at=0,
        updated_at=updated_at, **fields,
    )


def test_operations_label_keeps_first_use_order_without_repeats() -> None:
    assert operations_label(["resize", "watermark", "resize"]) == "resize,watermark"
    assert operations_label([]) == "unknown"


def test_bucket_index_puts_bounds_in_their_own_bucket() -> None:
    assert bucket_index(0.01) == 0
    assert bucket_index(0.011) == 1
    assert bucket_index(1e9) == len(DURATION_BUCKETS_S)


def test_quantile_interpolates_inside_the_bucket() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, [0, 10, 0, 0], bounds) == pytest.approx(1.5)
    assert quantile(0.95, [0, 10, 0, 0], bounds) == pytest.approx(1.95)
    assert quantile(0.5, [5, 0, 5, 0], bounds) == pytest.approx(1.0)
    assert quantile(0.99, [0, 0, 0, 3], bounds) == 4.0  # +Inf: the largest finite bound
    assert quantile(0.5, [0, 0, 0, 0], bounds) is None


def test_histogram_add_refuses_other_bounds() -> None:
    total, other = Histogram(), Histogram(bounds=[1.0], counts=[1, 0], sum=0.5)
    assert total.add(other) is False
    assert total.count == 0


def test_aggregate_sums_workers_and_counts_only_recent_ones_as_active() -> None:
    now = 10_000.0
    latency = Histogram()
    latency.observe(0.3)
    fresh = snapshot(
        "a", now - 2, completed={"resize": 2}, failed={"truncated": {"resize": 1}}, busy_s=3, wall_s=10,
        latency_s=latency,
    )
    stale = snapshot(
        "b", now - 60, completed={"resize": 3, "filter": 1}, latency_s=latency.model_copy(deep=True)
    )
    stopped = snapshot("c", now - 1, completed={"resize": 1}, stopped=True)
    fresh.recent.seconds, fresh.recent.busy_s = 60, 30

    totals = aggregate([fresh, stale, stopped], now)

    assert dict(totals.completed) == {"resize": 6, "filter": 1}
    assert totals.completed_total == 7
    assert dict(totals.failed) == {("resize", "truncated"): 1}
    assert dict(totals.failed_by_reason) == {"truncated": 1}
    assert totals.latency_s.count == 2
    assert [w.worker for w in totals.active_workers] == ["a"]
    assert totals.utilization_avg == pytest.approx(0.5)


def test_aggregate_leaves_out_histograms_with_other_bounds() -> None:
    odd = snapshot("a", 0, latency_s=Histogram(bounds=[1.0], counts=[0, 4], sum=9))
    totals = aggregate([odd], 0)
    assert totals.latency_s.count == 0
    assert totals.skipped_histograms == 1


def test_recorder_counts_jobs_and_histograms() -> None:
    stats = WorkerStats("w", MemoryObjectStore(), 5)
    stats.completed(record("resize,watermark", created_ago_s=2.0, processing_s=0.3))
    stats.completed(record("resize", created_ago_s=0.2, processing_s=0.1))
    stats.failed(None, "invalid_message")
    stats.retried()

    snap = stats.snapshot()

    assert snap.completed == {"resize,watermark": 1, "resize": 1}
    assert snap.failed == {"invalid_message": {"unknown": 1}}
    assert snap.retried == 1
    assert snap.processing_s.count == snap.latency_s.count == 2
    assert snap.latency_s.sum == pytest.approx(2.2)
    assert (snap.recent.completed, snap.recent.failed) == (2, 1)
    assert snap.instance.startswith("w-") and stats.key == f"stats/workers/{snap.instance}.json"


def test_recorder_utilization_is_busy_time_over_the_last_minute() -> None:
    clock = FakeClock()
    stats = WorkerStats("w", MemoryObjectStore(), 5, monotonic=clock)

    def busy_handler(delivery):
        clock.now += 30  # 30 s of work
        return "ack"

    tracked = stats.track(busy_handler)
    clock.now += 30  # 30 s idle
    tracked(None)
    snap = stats.snapshot()
    assert snap.recent.utilization == pytest.approx(0.5)
    assert (snap.busy_s, snap.wall_s) == (pytest.approx(30), pytest.approx(60))

    clock.now += 60  # a minute idle: the job is out of the window
    assert stats.snapshot().recent.utilization == pytest.approx(0.0)
    assert stats.snapshot().busy_s == pytest.approx(30)


def test_recorder_counts_time_of_a_job_still_running() -> None:
    clock = FakeClock()
    stats = WorkerStats("w", MemoryObjectStore(), 5, monotonic=clock)
    seen = {}

    def handler(delivery):
        clock.now += 10
        seen["snapshot"] = stats.snapshot()
        return "ack"

    stats.track(handler)(None)
    assert seen["snapshot"].busy is True
    assert seen["snapshot"].recent.utilization == pytest.approx(1.0)


def test_recorder_crash_counts_as_failed_and_propagates() -> None:
    stats = WorkerStats("w", MemoryObjectStore(), 5)

    def crashing(delivery):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        stats.track(crashing)(None)
    assert stats.snapshot().failed == {"handler_crashed": {"unknown": 1}}


def test_recorder_write_never_raises_when_storage_fails() -> None:
    store = MemoryObjectStore()
    store.down = True
    stats = WorkerStats("w", store, 5)
    assert stats.write() is False
    store.down = False
    assert stats.write() is True
    assert WorkerSnapshot.model_validate_json(store.puts[-1][1]).worker == "w"


def test_recorder_does_not_write_per_job_when_jobs_are_fast() -> None:
    store = MemoryObjectStore()
    stats = WorkerStats("w", store, interval_s=60)
    stats.start()
    tracked = stats.track(lambda delivery: "ack")
    for _ in range(50):
        tracked(None)
    stats.close()
    # the first snapshot at start and the final one at close; none per job
    assert len(store.puts) == 2
    final = WorkerSnapshot.model_validate_json(store.puts[-1][1])
    assert final.stopped is True


def test_window_percentiles_use_bucket_differences() -> None:
    base = {"0.1": 10, "1.0": 10, "+Inf": 10}
    now = {"0.1": 10, "1.0": 20, "+Inf": 20}
    assert window_percentiles(now, base)["p50"] == pytest.approx(0.55)
    assert bucket_counts(now) == ([0.1, 1.0], [10, 10, 0])
