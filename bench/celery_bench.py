"""Drives the Celery contender (bench/celery_app.py) like a client would: upload the original to the
bucket, `apply_async`, wait for the task's result. Same image, same counts and the same two parts
(batch, sequential) as bench/system.py; the worker is `celery worker` as a process, prefork with
`concurrency` children, on a vhost of its own and a bucket of its own in the bench's SeaweedFS.
"""

import os
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import quote

from bench.system import CpuMeter, EndToEnd, MachineCpu, cycle
from harness import procs
from harness.broker import BrokerVhost
from harness.objectstore import S3_KEYS, object_store
from harness.processes import ServiceProcess, wait_for
from load_test.results import percentiles

TASK_TIMEOUT_S = 300


class BenchCelery:
    def __init__(self, s3_endpoint: str, objectstore_pid: int, log_dir: Path, concurrency: int = 4) -> None:
        self.concurrency = concurrency
        self.objectstore_pid = objectstore_pid
        self.log_dir = log_dir
        self.vhost = BrokerVhost().create()
        self.bucket = f"bench-celery-{uuid.uuid4().hex[:8]}"
        self.store = object_store(s3_endpoint, self.bucket)
        self.store.ensure_bucket()
        endpoint = self.vhost.endpoint
        broker_url = (
            f"amqp://{endpoint.user}:{endpoint.password}@{endpoint.host}:{endpoint.port}"
            f"/{quote(self.vhost.name, safe='')}"
        )
        self.env = {
            **os.environ,
            "BENCH_CELERY_BROKER": broker_url,
            "BENCH_S3_ENDPOINT": s3_endpoint,
            "BENCH_S3_BUCKET": self.bucket,
            "BENCH_S3_ACCESS_KEY": S3_KEYS["S3_ACCESS_KEY"],
            "BENCH_S3_SECRET_KEY": S3_KEYS["S3_SECRET_KEY"],
        }
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("BENCH_")})
        from bench import celery_app  # reads the environment when imported

        celery_app.app.conf.broker_url = broker_url
        self.task = celery_app.make_thumbnail
        self.worker: ServiceProcess | None = None
        self.processes = 0

    def start_worker(self, processes: int) -> None:
        self.stop_worker()
        self.processes = processes
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.worker = ServiceProcess(
            f"celery-{processes}",
            [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
             "--concurrency", str(processes), "--loglevel", "WARNING", "--hostname", f"bench{processes}@%h"],
            self.env, self.log_dir / f"celery-{processes}.log",
        ).start()
        self.vhost.wait_for_consumers("celery", 1, timeout=60)
        wait_for(lambda: len(procs.children(self.worker.process.pid)) >= processes, 30, "the prefork pool")

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    @property
    def _pool_pids(self) -> list[int]:
        return procs.children(self.worker.process.pid)

    def warm_up(self, image: Path | Sequence[Path]) -> None:
        self._batch(_contents(image, 2 * self.processes))

    def measure(self, image: Path | Sequence[Path], count: int, sequential: int) -> EndToEnd:
        assert self.worker is not None
        pool = self._pool_pids
        for pid in pool:
            procs.reset_peak_rss(pid)
        cpu = CpuMeter({
            "workers": [self.worker.process.pid, *pool],
            "objectstore": [self.objectstore_pid],
            "client": [os.getpid()],
        })
        machine = MachineCpu()
        machine.start()
        cpu.start()
        started, finished = self._batch(_contents(image, count))
        per_job = cpu.per_job(count)
        busy = machine.stop()
        peak = max(procs.peak_rss_mb(pid) for pid in pool)
        latencies = []
        for data in _contents(image, sequential):
            submitted = time.time()
            self._submit(data).get(timeout=TASK_TIMEOUT_S)
            latencies.append((time.time() - submitted) * 1000)
        duration = max(end for _, end in finished) - started
        return EndToEnd(
            img_s=round(count / duration, 3),
            p50_ms=percentiles(latencies)["p50"],
            batch_p50_ms=percentiles((end - start) * 1000 for start, end in finished)["p50"],
            count=count,
            cpu_ms_per_job=per_job,
            machine_busy=busy,
            peak_rss_mb=peak,
        )

    def _submit(self, data: bytes):
        key = f"originals/{uuid.uuid4().hex}"
        self.store.put(key, data, content_type="image/jpeg")
        return self.task.apply_async((key, f"results/{key.rsplit('/', 1)[1]}.jpg"))

    def _batch(self, contents: list[bytes]) -> tuple[float, list[tuple[float, float]]]:
        """Uploads `concurrency` at a time; `apply_async` from this thread only (the rpc:// result
        consumer is not thread-safe). Returns the start and (submitted, finished) per task."""
        started = time.time()

        def upload(data: bytes) -> tuple[float, str]:
            submitted = time.time()
            key = f"originals/{uuid.uuid4().hex}"
            self.store.put(key, data, content_type="image/jpeg")
            return submitted, key

        pending = []
        with ThreadPoolExecutor(self.concurrency) as uploads:
            for future in as_completed([uploads.submit(upload, data) for data in contents]):
                submitted, key = future.result()
                pending.append((submitted, self.task.apply_async((key, f"results/{key.rsplit('/', 1)[1]}.jpg"))))
        return started, [
            (submitted, result.get(timeout=TASK_TIMEOUT_S)["finished_at"]) for submitted, result in pending
        ]

    def close(self) -> None:
        try:
            self.stop_worker()
        finally:
            self.vhost.delete()


def _contents(image: Path | Sequence[Path], count: int) -> list[bytes]:
    """`count` uploads' bytes, cycling through the images (each file read once)."""
    paths = cycle(image, count)
    read = {path: path.read_bytes() for path in set(paths)}
    return [read[path] for path in paths]
