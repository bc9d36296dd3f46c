"""What a load run writes and reads: one record per job, the summary, queue-depth samples.

A result folder holds
    jobs.jsonl         one `JobResult` per line
    summary.json       `summarize()`'s output (plus what the tool adds: bursts, settings)
    queue_depth.jsonl  one `QueueSample` per line (when the run sampled the queue)

Times ending in `_at` are Unix epoch seconds. Client times come from the load tool's clock,
server times (`created_at`, `started_at`, `finished_at`) from the job record: natively both run on
one machine and share the clock.

Latencies (milliseconds):
    latency_ms          client-observed: upload start → the client learns the job ended
                        (completion event received, or the status poll that saw it; never before
                        the 202, which tells the client the job's id)
    upload_ms           upload start → the API's 202
    server_total_ms     job record: created_at (API accepted) → finished_at (worker done)
    queue_wait_ms       job record: created_at → started_at
    processing_ms       job record: started_at → finished_at
    detection_lag_ms    observed end − finished_at: what following the job adds to latency_ms
"""

import json
import math
import os
import platform
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

JOBS_FILE = "jobs.jsonl"
SUMMARY_FILE = "summary.json"
QUEUE_FILE = "queue_depth.jsonl"

COMPLETED, FAILED, REJECTED, LOST = "completed", "failed", "rejected", "lost"
FINISHED = (COMPLETED, FAILED, REJECTED)

LATENCY_DEFINITIONS = {
    "latency_ms": "client-observed: upload start -> client learns the job ended (event or status poll)",
    "upload_ms": "upload start -> 202 from the API",
    "server_total_ms": "job record created_at (accepted) -> finished_at (worker done)",
    "queue_wait_ms": "job record created_at -> started_at",
    "processing_ms": "job record started_at -> finished_at",
    "detection_lag_ms": "observed end - finished_at: the delay the following method adds to latency_ms",
}


@dataclass
class JobResult:
    """One job as the load tool saw it, from upload to its end."""

    image: str
    image_bytes: int
    submitted_at: float  # client: upload started
    burst: int | None = None
    job_id: str | None = None
    uploaded_at: float | None = None  # client: 202 received
    observed_at: float | None = None  # client: learned the job ended (set by observe_end)
    created_at: float | None = None  # server (job record)
    started_at: float | None = None
    finished_at: float | None = None
    status: str = LOST  # completed | failed | rejected (upload refused) | lost (no end by the timeout)
    worker: str | None = None
    attempts: int | None = None
    pixels: int | None = None
    error: str | None = None
    throttled_s: float = 0.0  # client: waited on the API's upload rate limit before the 202

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def observe_end(self, at: float) -> None:
        """The client learned `at` that the job ended. It holds the job's id only from the 202 on, so
        an end event that arrived before the 202 was read (a fast worker, a slow response) tells it
        of this job's end when the 202 comes: observed_at is never before uploaded_at."""
        self.observed_at = at if self.uploaded_at is None else max(at, self.uploaded_at)

    @property
    def latency_ms(self) -> float | None:
        return _ms(self.submitted_at, self.observed_at)

    @property
    def upload_ms(self) -> float | None:
        return _ms(self.submitted_at, self.uploaded_at)

    @property
    def server_total_ms(self) -> float | None:
        return _ms(self.created_at, self.finished_at)

    @property
    def queue_wait_ms(self) -> float | None:
        return _ms(self.created_at, self.started_at)

    @property
    def processing_ms(self) -> float | None:
        return _ms(self.started_at, self.finished_at)

    @property
    def detection_lag_ms(self) -> float | None:
        return _ms(self.finished_at, self.observed_at)

    @property
    def end_at(self) -> float | None:
        """When the job ended: the server's finished_at if known, else when the client saw it."""
        return self.finished_at or self.observed_at

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in LATENCY_DEFINITIONS:
            data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "JobResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class QueueSample:
    at: float  # epoch seconds
    ready: int  # messages waiting in the work queue
    unacked: int | None  # delivered to a worker, not yet acked (management API statistics)
    consumers: int
    load_1m: float | None = None  # the machine's 1-minute load average: is anything else using the CPUs?


@dataclass
class Run:
    """A result folder, read back."""

    path: Path
    summary: dict
    jobs: list[JobResult] = field(default_factory=list)
    queue: list[QueueSample] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.summary.get("label") or self.path.name


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 1)


def epoch(value: str | datetime | None) -> float | None:
    """An ISO 8601 time from a job record as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def percentiles(values: Iterable[float | None]) -> dict[str, float | None]:
    """p50, p95, p99, max and mean of the values that are not None (all None when there are none)."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "n": len(data),
        "p50": round(percentile(data, 50), 1),
        "p95": round(percentile(data, 95), 1),
        "p99": round(percentile(data, 99), 1),
        "max": round(data[-1], 1),
        "mean": round(sum(data) / len(data), 1),
    }


def summarize(jobs: Sequence[JobResult], workers: int | None, **extra) -> dict:
    """The summary of a run. `completed + failed + lost == count`; `failed` includes rejected uploads.

    `duration_s` runs from the first upload's start to the last job's end (server finished_at when
    known), so `throughput_img_s` = finished jobs / duration_s does not include how late the client
    noticed the last one. `per_worker` counts completed jobs per worker (it sums to `completed`).
    """
    statuses = Counter(job.status for job in jobs)
    finished = [job for job in jobs if job.finished]
    ends = [job.end_at for job in finished if job.end_at is not None]
    start = min((job.submitted_at for job in jobs), default=None)
    duration = (max(ends) - start) if ends and start is not None else None
    completed = [job for job in jobs if job.status == COMPLETED]
    lost = [job for job in jobs if job.status == LOST]
    return {
        "count": len(jobs),
        "completed": statuses[COMPLETED],
        "failed": statuses[FAILED] + statuses[REJECTED],
        "rejected": statuses[REJECTED],
        "lost": len(lost),
        "lost_jobs": [{"job_id": j.job_id, "image": j.image, "error": j.error} for j in lost],
        "workers": workers,
        "duration_s": round(duration, 3) if duration else None,
        "throughput_img_s": round(len(finished) / duration, 3) if duration else 0.0,
        "latency_ms": percentiles(j.latency_ms for j in finished),
        "upload_ms": percentiles(j.upload_ms for j in jobs),
        "server_total_ms": percentiles(j.server_total_ms for j in finished),
        "queue_wait_ms": percentiles(j.queue_wait_ms for j in finished),
        "processing_ms": percentiles(j.processing_ms for j in finished),
        "detection_lag_ms": percentiles(j.detection_lag_ms for j in finished),
        "throttled": {
            "uploads": sum(j.throttled_s > 0 for j in jobs),
            "wait_s_max": max((j.throttled_s for j in jobs), default=0.0),
        },
        "per_worker": dict(sorted(Counter(j.worker or "?" for j in completed).items())),
        "megapixels_total": round(sum(j.pixels or 0 for j in jobs) / 1e6, 1),
        "bytes_total": sum(j.image_bytes for j in jobs),
        "latency_definitions": LATENCY_DEFINITIONS,
        **extra,
    }


# The vector instruction sets the image libraries choose their code paths by: the same code on
# another CPU can give another ratio against libvips (bench.json records which it had).
SIMD_FLAGS = ("sse4_2", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_fp16", "amx_tile")


def cpu_identity(cpuinfo: str) -> dict:
    """The first processor's model name, family/model/stepping and vector instruction sets, from
    /proc/cpuinfo's text (virtual machines often show a generic model name: the numbers still tell
    one CPU generation from another)."""
    first: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if first:
                break
            continue
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    flags = set(first.get("flags", "").split())
    identity: dict = {"simd": [flag for flag in SIMD_FLAGS if flag in flags]}
    if "model name" in first:
        identity["cpu"] = first["model name"]
    if {"cpu family", "model", "stepping"} <= first.keys():
        identity["cpu_id"] = f"family {first['cpu family']} model {first['model']} stepping {first['stepping']}"
    return identity


def machine_info() -> dict:
    info: dict = {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "memory_gb": None}
    try:
        info.update(cpu_identity(Path("/proc/cpuinfo").read_text()))
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {**info, "os": platform.platform(terse=True)}


def write_run(
    out_dir: Path, jobs: Sequence[JobResult], summary: dict, queue: Sequence[QueueSample] = ()
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / JOBS_FILE, "w") as handle:
        for job in jobs:
            handle.write(json.dumps(job.to_dict()) + "\n")
    if queue:
        with open(out_dir / QUEUE_FILE, "w") as handle:
            for sample in queue:
                handle.write(json.dumps(asdict(sample)) + "\n")
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def read_run(path: Path) -> Run:
    summary = json.loads((path / SUMMARY_FILE).read_text())
    jobs, queue = [], []
    if (path / JOBS_FILE).exists():
        jobs = [
            JobResult.from_dict(json.loads(line))
            for line in (path / JOBS_FILE).read_text().splitlines()
            if line
        ]
    if (path / QUEUE_FILE).exists():
        queue = [
            QueueSample(**json.loads(line)) for line in (path / QUEUE_FILE).read_text().splitlines() if line
        ]
    return Run(path, summary, jobs, queue)


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """Result folders named directly, or found one level below the given folders."""
    found: list[Path] = []
    for path in paths:
        if (path / SUMMARY_FILE).exists():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.glob(f"*/{SUMMARY_FILE}")))
    return [read_run(p) for p in dict.fromkeys(found)]
