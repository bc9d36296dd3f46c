"""Live performance of the system: throughput, latency percentiles, queue size, worker utilization
and failed tasks.

    python monitoring/performance_monitor.py                       # refreshes every 2 s
    python monitoring/performance_monitor.py --csv perf.csv        # also appends one row per reading
    python monitoring/performance_monitor.py --once --json         # one reading as JSON

Sources: the API's GET /stats (the workers' figures, added up from their snapshots in the bucket)
and the RabbitMQ management API (queue size). Either may be briefly down: the view says so and
keeps polling; a CSV row is still written, with the missing figures empty.

How the figures are computed, over a sliding window of `--window` seconds:
- throughput: jobs completed in the window / the window's length, from the cumulative count in
  /stats at the oldest reading inside the window and now;
- latency p50/p95/p99 (upload accepted to result stored) and processing time: from the difference
  of the cumulative histogram buckets between the same two readings, interpolated inside a bucket
  as Prometheus' histogram_quantile does. The error is at most the width of the bucket the
  percentile falls in (bounds 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 500 ms, 1 s, 2.5 s, 5 s,
  10 s, 30 s, 60 s, 120 s, 300 s);
- until the monitor has two readings (always with --once), it shows the workers' own figures for
  their last 60 s, which /stats reports (source "workers-60s" instead of "monitor-window");
- failed: the total since the workers started and the number failed inside the window;
- queue size: messages ready and unacknowledged in the work queue, and in the retry and
  dead-letter queues;
- worker utilization: each active worker's fraction of its last 60 s spent processing jobs,
  averaged over active workers; RabbitMQ's consumer utilisation of the work queue is shown beside
  it (the fraction of time the queue could deliver at once, which is not the same thing).
The workers write their figures every STATS_INTERVAL_S (5 s) and the API caches them for 2 s, so
the numbers trail the jobs by a few seconds; a window much shorter than that is noisy.

Connection settings are the services' own (common/settings.py), from the environment or ./.env:
API_PUBLIC_URL (the API's address), RABBITMQ_HOST, RABBITMQ_MANAGEMENT_PORT, RABBITMQ_USER,
RABBITMQ_PASSWORD, RABBITMQ_VHOST.
"""

import argparse
import csv
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python monitoring/performance_monitor.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tools.project_python import use_project_python

    use_project_python()

import httpx
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from common.observability.management import ROLE_DEAD_LETTER, ROLE_RETRY, ManagementApi, read_queues
from common.observability.stats import quantile
from common.settings import settings
from common.topology import WORK_QUEUE
from monitoring.live import fmt, run, sparkline

CSV_COLUMNS = [
    "time", "window_s", "source", "throughput_per_s", "completed_total", "failed_total", "failed_in_window",
    "latency_p50_s", "latency_p95_s", "latency_p99_s", "processing_p50_s", "processing_p95_s",
    "processing_p99_s", "queue_ready", "queue_unacked", "retry_messages", "dead_letter_messages",
    "workers_active", "utilization_avg", "rabbitmq_consumer_utilisation", "api_error", "broker_error",
]
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclass
class Reading:
    at: float  # monotonic
    completed: int
    failed: int
    latency: dict[str, int]  # cumulative buckets, "le" -> count
    processing: dict[str, int]


def bucket_counts(cumulative: dict[str, int]) -> tuple[list[float], list[int]]:
    """Bounds and per-bucket counts from /stats' cumulative buckets ("0.1": n, ..., "+Inf": n)."""
    pairs = sorted((float(le), count) for le, count in cumulative.items())
    counts, previous = [], 0
    for _, count in pairs:
        counts.append(max(count - previous, 0))
        previous = count
    return [bound for bound, _ in pairs if bound != float("inf")], counts


def window_percentiles(now: dict[str, int], base: dict[str, int] | None) -> dict[str, float | None]:
    delta = {le: count - (base or {}).get(le, 0) for le, count in now.items()}
    bounds, counts = bucket_counts(delta)
    return {name: quantile(q, counts, bounds) for name, q in QUANTILES.items()}


class PerformanceMonitor:
    def __init__(self, api_url: str, window: float) -> None:
        self._api = httpx.Client(base_url=api_url, timeout=5.0)
        self._broker = ManagementApi.from_settings(settings.broker, timeout=3.0)
        self._window = window
        self._readings: deque[Reading] = deque()
        self.throughput_history: deque[float | None] = deque(maxlen=60)
        self.api_url = api_url

    def poll(self) -> dict[str, Any]:
        stats, api_error = self._get_stats()
        broker = read_queues(settings.broker, self._broker)
        row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS)
        row["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        row["api_error"], row["broker_error"] = api_error, broker.error
        if stats is not None:
            row.update(self._performance(stats))
        if broker.available:
            work = broker.queue(WORK_QUEUE)
            row["queue_ready"] = work.ready if work else None
            row["queue_unacked"] = work.unacked if work else None
            row["retry_messages"] = int(broker.total(ROLE_RETRY, "messages"))
            row["dead_letter_messages"] = int(broker.total(ROLE_DEAD_LETTER, "messages"))
            row["rabbitmq_consumer_utilisation"] = work.consumer_utilisation if work else None
        self.throughput_history.append(row["throughput_per_s"])
        return row

    def _get_stats(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            response = self._api.get("/stats")
            response.raise_for_status()
            return response.json(), None
        except httpx.HTTPStatusError as exc:
            return None, f"API at {self.api_url} answered HTTP {exc.response.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            return None, f"API at {self.api_url} unavailable: {type(exc).__name__}: {exc}"

    def _performance(self, stats: dict[str, Any]) -> dict[str, Any]:
        now = Reading(
            at=time.monotonic(),
            completed=stats["jobs"]["completed"],
            failed=stats["jobs"]["failed"],
            latency=stats["latency_s"]["buckets"],
            processing=stats["processing_s"]["buckets"],
        )
        last = self._readings[-1] if self._readings else None
        if last is not None and (now.completed < last.completed or now.failed < last.failed):
            self._readings.clear()  # the totals went back (stored statistics deleted): start again
        self._readings.append(now)
        while len(self._readings) > 2 and self._readings[1].at <= now.at - self._window:
            self._readings.popleft()
        base = self._readings[0]
        figures: dict[str, Any] = {
            "completed_total": now.completed,
            "failed_total": now.failed,
            "workers_active": stats["workers"]["active"],
            "utilization_avg": stats["workers"]["utilization_avg"],
        }
        if base is now:
            recent = stats["throughput"]
            figures.update(
                source="workers-60s", window_s=recent["window_s"], throughput_per_s=recent["completed_per_s"],
                failed_in_window=recent["failed"],
                **{f"latency_{k}_s": stats["latency_s"]["recent"][k] for k in QUANTILES},
                **{f"processing_{k}_s": stats["processing_s"]["recent"][k] for k in QUANTILES},
            )
            return figures
        elapsed = now.at - base.at
        figures.update(
            source="monitor-window", window_s=round(elapsed, 1),
            throughput_per_s=round((now.completed - base.completed) / elapsed, 4),
            failed_in_window=now.failed - base.failed,
            **{f"latency_{k}_s": v for k, v in window_percentiles(now.latency, base.latency).items()},
            **{
                f"processing_{k}_s": v
                for k, v in window_percentiles(now.processing, base.processing).items()
            },
        )
        return figures


def render(row: dict[str, Any], history: deque[float | None]) -> RenderableType:
    title = f"{row['time']}  window {fmt(row['window_s'], 0)} s ({row['source'] or '—'})"
    lines: list[RenderableType] = [Text(title, style="bold")]
    for error in (row["api_error"], row["broker_error"]):
        if error:
            lines.append(Text(f"UNAVAILABLE: {error}", style="bold red"))
    table = Table(show_header=False, show_edge=False, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_row("throughput", fmt(row["throughput_per_s"], 2, " jobs/s"), sparkline(history))
    table.add_row(
        "latency p50 / p95 / p99",
        " / ".join(fmt(row[f"latency_{k}_s"], 3) for k in QUANTILES) + " s", "upload to result",
    )
    table.add_row(
        "processing p50 / p95 / p99",
        " / ".join(fmt(row[f"processing_{k}_s"], 3) for k in QUANTILES) + " s", "in a worker",
    )
    table.add_row(
        "queue size", f"{fmt(row['queue_ready'])} ready, {fmt(row['queue_unacked'])} unacked",
        f"retrying {fmt(row['retry_messages'])}, dead letters {fmt(row['dead_letter_messages'])}",
    )
    table.add_row(
        "worker utilization", fmt(_percent(row["utilization_avg"]), 1, " %"),
        f"{fmt(row['workers_active'])} active workers; RabbitMQ consumer utilisation "
        f"{fmt(_percent(row['rabbitmq_consumer_utilisation']), 1, ' %')}",
    )
    table.add_row(
        "failed tasks", fmt(row["failed_total"]),
        f"{fmt(row['failed_in_window'])} in the window; {fmt(row['completed_total'])} completed in all",
    )
    lines.append(table)
    return Group(*lines)


def _percent(value: float | None) -> float | None:
    return None if value is None else value * 100


class CsvRecorder:
    """Appends one row per reading; writes the header when the file is new or empty."""

    def __init__(self, path: Path) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
        if new:
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})
        self._file.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="performance_monitor.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--interval", type=float, default=2.0, metavar="S",
                        help="seconds between readings (default 2)")
    parser.add_argument("--window", type=float, default=60.0, metavar="S",
                        help="sliding window for throughput, percentiles and failures, s (default 60)")
    parser.add_argument("--once", action="store_true", help="take one reading, print it and exit 0")
    parser.add_argument("--json", action="store_true",
                        help="print JSON instead of the live view: one object, or one line per reading")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="append one row per reading to FILE (header written if the file is new)")
    parser.add_argument("--api-url", default=settings.api_public_url,
                        help=f"the API's base URL (default: API_PUBLIC_URL, now {settings.api_public_url})")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.window <= 0:
        parser.error("--interval and --window must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    monitor = PerformanceMonitor(args.api_url.rstrip("/"), args.window)
    recorder = CsvRecorder(args.csv) if args.csv else None

    def poll() -> dict[str, Any]:
        row = monitor.poll()
        if recorder is not None:
            recorder.write(row)
        return row

    return run(poll, lambda row: render(row, monitor.throughput_history), args.interval, args.once, args.json)


if __name__ == "__main__":
    sys.exit(main())
