"""The real system end to end, started the way the integration tests start it, driven by the load
tools' client: API, W workers and the notifier as processes, a private vhost on the local RabbitMQ,
the bench's own SeaweedFS.

A measurement has two parts on one image:
    batch       `count` uploads submitted at once (`concurrency` in flight); throughput is finished
                jobs / (first upload start → last job finished), as `load_test.results.summarize`
                computes it.
    sequential  `sequential` jobs one after the other on an idle system; p50 of their client-observed
                latency (upload start → completion event received): what one user waits.
"""

import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.settings import Settings
from harness import procs
from harness.broker import BrokerVhost
from harness.system import System, build_system
from load_test.client import LoadClient, Submission
from load_test.results import COMPLETED, percentiles, summarize

LATENCY_PHASES = ("latency", "upload", "queue_wait", "processing", "detection_lag")


@dataclass
class EndToEnd:
    """One contender's figures on one image: throughput, latency and what its processes used."""

    img_s: float
    p50_ms: float | None
    batch_p50_ms: float | None
    count: int
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)  # process → CPU ms per batch job
    machine_busy: float | None = None  # share of both cores in use during the batch
    peak_rss_mb: float | None = None  # the workers' highest VmHWM during the batch
    extra: dict = field(default_factory=dict)


class MachineCpu:
    """Busy share of all cores between `start()` and `stop()` (from /proc/stat)."""

    def start(self) -> None:
        self._busy, self._total = procs.machine_ticks()

    def stop(self) -> float:
        busy, total = procs.machine_ticks()
        return round((busy - self._busy) / max(1, total - self._total), 3)


class CpuMeter:
    """CPU seconds used by named processes over an interval, per job."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids

    def _read(self) -> dict[str, float]:
        return {name: sum(procs.cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}

    def start(self) -> None:
        self._before = self._read()

    def per_job(self, jobs: int) -> dict[str, float]:
        after = self._read()
        return {name: round((after[name] - self._before[name]) * 1000 / jobs, 1) for name in after}


class BenchSystem:
    """`vhost` and `env` point the system at another broker (a cluster: RABBITMQ_HOSTS ...);
    `objectstore_pids` may be several processes (a storage cluster), `broker_pids` are metered too."""

    def __init__(
        self, s3_endpoint: str, objectstore_pid: int | list[int], log_dir: Path, workers: int, prefetch: int = 1,
        concurrency: int = 4, vhost: BrokerVhost | None = None, env: dict[str, str] | None = None,
        broker_pids: list[int] | None = None,
    ) -> None:
        self.workers = workers
        self.prefetch = prefetch
        self.concurrency = concurrency
        self.vhost = vhost or BrokerVhost().create()
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.system: System = build_system(
                self.vhost, s3_endpoint, log_dir,
                workers=tuple(f"bench-w{index + 1}" for index in range(workers)),
                PREFETCH_COUNT=str(prefetch),
                # The bench is one client sending everything: the per-client upload limit is not measured.
                RATE_LIMIT_UPLOADS="1000000/minute",
                **(env or {}),
            )
        except BaseException:
            self.vhost.delete()
            raise
        self.settings = Settings(
            _env_file=None, rabbitmq_vhost=self.vhost.name,
            rabbitmq_host=self.vhost.endpoint.host, rabbitmq_port=self.vhost.endpoint.port,
            rabbitmq_management_port=self.vhost.endpoint.management_port,
        )
        # Each worker and its image process (worker/isolation.py), where the pipeline's CPU and memory go.
        self.worker_pids = [
            pid
            for i in range(workers)
            for worker in [self.system.services[f"bench-w{i + 1}"].process.pid]
            for pid in (worker, *procs.children(worker))
        ]
        pids = {
            "api": [self.system.services["api"].process.pid],
            "workers": self.worker_pids,
            "notifier": [self.system.services["notifier"].process.pid],
            "objectstore": objectstore_pid if isinstance(objectstore_pid, list) else [objectstore_pid],
            "client": [os.getpid()],
        }
        if broker_pids:
            pids["broker"] = broker_pids
        self.cpu = CpuMeter(pids)

    def client(self, concurrency: int | None = None) -> LoadClient:
        return LoadClient(self.system.api_url, self.settings, concurrency=concurrency or self.concurrency, timeout=300)

    def warm_up(self, image: Path | Sequence[Path]) -> None:
        """A few jobs first, so fonts, codecs and connections are loaded before anything is timed."""
        jobs = self.client().run_sync(submissions(image, 2 * self.workers))
        _check(jobs)

    def measure(self, image: Path | Sequence[Path], count: int, sequential: int) -> EndToEnd:
        """`image`: one image, or a set taken in turn (a batch of `count` cycles through it)."""
        for pid in self.worker_pids:
            procs.reset_peak_rss(pid)
        machine = MachineCpu()
        machine.start()
        self.cpu.start()
        jobs = self.client().run_sync(submissions(image, count))
        cpu = self.cpu.per_job(count)
        busy = machine.stop()
        _check(jobs)
        summary = summarize(jobs, self.workers)
        peak = max(procs.peak_rss_mb(pid) for pid in self.worker_pids)
        one_at_a_time = []
        for submission in submissions(image, sequential):
            (job,) = self.client(1).run_sync([submission])
            _check([job])
            one_at_a_time.append(job)
        extra = {
            "processing_ms_p50": summary["processing_ms"]["p50"],
            "upload_ms_p50": summary["upload_ms"]["p50"],
            "queue_wait_ms_p50": summary["queue_wait_ms"]["p50"],
            "per_worker": summary["per_worker"],
        }
        if one_at_a_time:
            # Where one job's latency goes (load_test/results.py defines each phase).
            alone = summarize(one_at_a_time, self.workers)
            extra["one_at_a_time_p50_ms"] = {phase: alone[f"{phase}_ms"]["p50"] for phase in LATENCY_PHASES}
        return EndToEnd(
            img_s=summary["throughput_img_s"],
            p50_ms=percentiles([job.latency_ms for job in one_at_a_time])["p50"],
            batch_p50_ms=summary["latency_ms"]["p50"],
            count=count,
            cpu_ms_per_job=cpu,
            machine_busy=busy,
            peak_rss_mb=peak,
            extra=extra,
        )

    def peak_rss_of_one_job(self, image: Path) -> float:
        """The workers' peak resident memory while one job runs on `image` (VmHWM, reset first)."""
        for pid in self.worker_pids:
            procs.reset_peak_rss(pid)
        (job,) = self.client(1).run_sync([Submission(image)])
        _check([job])
        time.sleep(0.1)
        return max(procs.peak_rss_mb(pid) for pid in self.worker_pids)

    def close(self) -> None:
        try:
            self.system.stop()
        finally:
            self.vhost.delete()


def cycle(image: Path | Sequence[Path], count: int) -> list[Path]:
    """`count` images: `image` repeated, or the set's images taken in turn."""
    images = [image] if isinstance(image, Path) else list(image)
    return list(itertools.islice(itertools.cycle(images), count))


def submissions(image: Path | Sequence[Path], count: int) -> list[Submission]:
    return [Submission(path) for path in cycle(image, count)]


def _check(jobs) -> None:
    bad = [job for job in jobs if job.status != COMPLETED]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(jobs)} jobs did not complete: {bad[0].status} {bad[0].error}")
