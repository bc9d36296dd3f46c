"""`python -m bench.soak --minutes 20` (make soak): the system under steady load for a long time.

The system is started as the benchmark starts it (private vhost, SeaweedFS of its own, API + 2 workers +
notifier as processes). Its capacity is measured first on the image set (a batch submitted at once);
then jobs arrive evenly at `--load` (0.7) of that rate for `--minutes`, each image of a mixed set
(test_images/generate.py, profile `mixed`: 0.3-24 MP, JPEG/PNG/WebP, EXIF orientations, alpha) in turn.
Every `--sample` seconds: the resident memory and open file descriptors of the API, each worker (with
its image process) and the notifier; the virtual host's RabbitMQ connections and channels; the work
queue's depth. At the end, the verdicts:

    lost        every upload accepted, and no job without an end (completed or failed) when the run is over
    memory      resident memory grows < 10 %: its median in the last quarter against its median in the
                first quarter after warm-up (the first `--warm-up` share of the run); a worker's memory
                jumps while it holds a large image, the median is the level it comes back to
    latency     the p99 of the last half is within 1.5× the p99 of the first half (after warm-up)
    fds         no process holds more than 5 descriptors above its level after warm-up
    broker      the number of connections and of channels never changes after warm-up

Writes results/soak/soak.json, report.md and soak.png (memory, latency, descriptors, broker).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.system import BenchSystem, cycle
from common.topology import WORK_QUEUE
from harness import procs
from harness.objectstore import PrivateObjectStore
from harness.processes import PROJECT_DIR
from load_test.client import LoadClient, Submission, image_files
from load_test.results import COMPLETED, FAILED, LOST, REJECTED, JobResult, machine_info, percentiles
from test_images.generate import generate

RESULTS_DIR = PROJECT_DIR / "results" / "soak"
WORKERS = 2
RSS_GROWTH_LIMIT = 0.10
P99_RATIO_LIMIT = 1.5
FD_GROWTH_LIMIT = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "20")))
    parser.add_argument("--load", type=float, default=0.7, help="share of the measured capacity")
    parser.add_argument("--images", type=int, default=24, help="images in the mixed set")
    parser.add_argument("--profile", default="mixed")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warm-up", type=float, default=0.2, help="share of the run before the baseline")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Sample:
    at: float  # seconds since the soak started
    rss_mb: dict[str, float]
    fds: dict[str, int]
    connections: int | None
    channels: int | None
    queued: int | None


@dataclass
class Sampler:
    """Reads the processes and the broker every `interval` seconds on a thread of its own."""

    system: BenchSystem
    interval: float
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        services = self.system.system.services
        names = {"api": "api", "notifier": "notifier", **{f"worker-{i + 1}": f"bench-w{i + 1}" for i in range(WORKERS)}}
        self.processes: dict[str, int] = {}
        for name, service in names.items():
            process = services[service].process
            assert process is not None
            self.processes[name] = process.pid
        self.missed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> "Sampler":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(30)
        return self.samples

    def _family(self, pid: int) -> list[int]:
        # A worker's image process (worker/isolation.py) is where the pipeline's memory goes.
        return [pid, *procs.children(pid)]

    def _run(self) -> None:
        while not self._stop.wait(self.interval if self.samples else 0):
            try:
                self.samples.append(self.read())
            except OSError as exc:  # a process gone from /proc: the soak's verdicts show it
                self.missed.append(f"{time.monotonic() - self.started:.1f} s: {exc!r}")

    def read(self) -> Sample:
        management = self.system.vhost.management
        connections: int | None
        channels: int | None
        queued: int | None
        try:
            connections = len(management.connections())
            channels = len(management.channels())
            queued = management.queue(WORK_QUEUE).get("messages")
        except Exception:  # a missed sample, not a failed soak
            connections = channels = queued = None
        return Sample(
            at=round(time.monotonic() - self.started, 1),
            rss_mb={
                name: round(sum(procs.rss_mb(p) for p in self._family(pid)), 1) for name, pid in self.processes.items()
            },
            fds={name: sum(procs.open_fds(p) for p in self._family(pid)) for name, pid in self.processes.items()},
            connections=connections,
            channels=channels,
            queued=queued,
        )


def measure_capacity(system: BenchSystem, images: list[Path], count: int) -> float:
    """Images per second with `count` jobs submitted at once (the set's images in turn)."""
    jobs = system.client().run_sync([Submission(path) for path in cycle(images, count)])
    ended = [job for job in jobs if job.status in (COMPLETED, FAILED)]
    first = min(job.submitted_at for job in jobs)
    last = max(job.observed_at or job.submitted_at for job in ended)
    return len(ended) / (last - first)


def soak(system: BenchSystem, images: list[Path], rate: float, seconds: float, sampler: Sampler) -> list[JobResult]:
    count = max(1, round(rate * seconds))
    submissions = [Submission(path, at=index / rate) for index, path in enumerate(cycle(images, count))]
    client = LoadClient(system.system.api_url, system.settings, concurrency=8, timeout=600)
    sampler.start()
    try:
        return client.run_sync(submissions)
    finally:
        sampler.stop()


def verdicts(jobs: list[JobResult], samples: list[Sample], soak_started: float, seconds: float, warm_up: float) -> dict:
    baseline_at = seconds * warm_up
    steady = [s for s in samples if s.at >= baseline_at] or samples[-1:]
    first = steady[0]
    # A worker's memory jumps while it holds a large image, and a sample catches such a moment or not:
    # compare the level it sits at (the median) in the first quarter after warm-up and in the last.
    quarter = max(1, len(steady) // 4)
    rss_growth = {
        name: round(
            statistics.median(s.rss_mb[name] for s in steady[-quarter:])
            / statistics.median(s.rss_mb[name] for s in steady[:quarter]) - 1, 4
        )
        for name in first.rss_mb
    }
    fd_growth = {name: max(s.fds[name] for s in steady) - first.fds[name] for name in first.fds}
    connections = sorted({s.connections for s in steady if s.connections is not None})
    channels = sorted({s.channels for s in steady if s.channels is not None})

    def p99(window: list[JobResult]) -> float | None:
        return percentiles(job.latency_ms for job in window if job.status == COMPLETED)["p99"]

    measured = [job for job in jobs if job.submitted_at - soak_started >= baseline_at]
    middle = baseline_at + (seconds - baseline_at) / 2
    first_half = [job for job in measured if job.submitted_at - soak_started < middle]
    second_half = [job for job in measured if job.submitted_at - soak_started >= middle]
    p99_first, p99_second = p99(first_half), p99(second_half)
    p99_ratio = round(p99_second / p99_first, 3) if p99_first and p99_second else None
    lost = [job for job in jobs if job.status == LOST]
    rejected = [job for job in jobs if job.status == REJECTED]
    return {
        "lost": len(lost),
        "rejected": len(rejected),
        "failed": sum(job.status == FAILED for job in jobs),
        "completed": sum(job.status == COMPLETED for job in jobs),
        "rss_growth": rss_growth,
        "fd_growth": fd_growth,
        "connections_seen": connections,
        "channels_seen": channels,
        "p99_ms_first_half": p99_first,
        "p99_ms_second_half": p99_second,
        "p99_ratio": p99_ratio,
        "pass": {
            "no_job_lost": not lost and not rejected,
            "memory_flat": all(growth < RSS_GROWTH_LIMIT for growth in rss_growth.values()),
            "p99_steady": p99_ratio is not None and p99_ratio <= P99_RATIO_LIMIT,
            "fds_constant": all(growth <= FD_GROWTH_LIMIT for growth in fd_growth.values()),
            "broker_connections_constant": len(connections) == 1 and len(channels) == 1,
        },
    }


def latency_windows(jobs: list[JobResult], soak_started: float, seconds: float) -> list[dict]:
    """p50 and p99 of the jobs submitted in each of about 20 windows of the run."""
    width = max(10.0, seconds / 20)
    windows = []
    start = 0.0
    while start < seconds:
        inside = [
            job for job in jobs
            if start <= job.submitted_at - soak_started < start + width and job.status == COMPLETED
        ]
        spread = percentiles(job.latency_ms for job in inside)
        windows.append(
            {"from_s": round(start, 1), "jobs": len(inside), "p50_ms": spread["p50"], "p99_ms": spread["p99"]}
        )
        start += width
    return windows


def stop_quietly(system: BenchSystem | None, store: PrivateObjectStore, work: Path) -> None:
    """Stops what the soak started; a slow stop is reported, and does not cost the run's figures."""
    for stop in (system.close if system is not None else None, store.stop):
        try:
            if stop is not None:
                stop()
        except Exception as exc:
            say(f"cleaning up: {exc!r}")
    shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    seconds = args.minutes * 60
    images = image_files(generate(args.images, seed=12, profile=args.profile))
    say(f"{len(images)} images ({args.profile}); the system with {WORKERS} workers")
    work = Path(tempfile.mkdtemp(prefix="imgpipe-soak-"))
    (work / "s3").mkdir()
    store = PrivateObjectStore(work / "s3").start()
    system = None
    try:
        assert store._process is not None  # the soak meters the store's process
        system = BenchSystem(store.endpoint, store._process.pid, args.out / "logs", WORKERS)
        system.warm_up(images[:WORKERS * 2])
        capacity = measure_capacity(system, images, max(2 * len(images), 16))
        rate = args.load * capacity
        say(f"capacity {capacity:.2f} img/s; soaking at {rate:.2f} img/s for {args.minutes:g} min")
        sampler = Sampler(system, args.sample)
        soak_started = time.time()
        jobs = soak(system, images, rate, seconds, sampler)
        say(f"{len(jobs)} jobs in {time.time() - soak_started:.0f} s; {len(sampler.samples)} samples")
    finally:
        stop_quietly(system, store, work)
    results = {
        "command": f"python -m bench.soak --minutes {args.minutes:g}",
        "machine": {**machine_info(), "loadavg_after": os.getloadavg()},
        "duration_s": round(time.time() - started, 1),
        "settings": {
            "workers": WORKERS, "images": len(images), "profile": args.profile, "load": args.load,
            "minutes": args.minutes, "sample_s": args.sample, "warm_up_share": args.warm_up,
        },
        "capacity_img_s": round(capacity, 3),
        "rate_img_s": round(rate, 3),
        "jobs": len(jobs),
        "verdicts": verdicts(jobs, sampler.samples, soak_started, seconds, args.warm_up),
        "latency_windows": latency_windows(jobs, soak_started, seconds),
        "samples": [sample.__dict__ for sample in sampler.samples],
        "missed_samples": sampler.missed,
    }
    from bench import soak_report

    path = soak_report.write(results, args.out)
    print(soak_report.summary(results))
    say(f"wrote {path}")
    return 0 if all(results["verdicts"]["pass"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
