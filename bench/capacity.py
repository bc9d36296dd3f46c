"""`python -m bench.capacity` (make capacity-measure): what one job costs each part of the system,
measured on the real system as it runs across machines, for docs/scaling.md and tools/capacity.py.

The system runs the way a cluster runs it: a three-node RabbitMQ cluster with quorum queues (the
tests' private nodes, harness/broker_cluster.py), SeaweedFS as a cluster with replication
001 (master, three volume servers, filer + S3), the API, two workers and the notifier as
processes. For each image size (and one heavier set of operations) a batch of jobs is run and
/proc gives every process's CPU time over the batch, per job, and its peak resident memory.

Writes docs/capacity/measured.json (--out), which the calculator reads. Takes about 4 minutes.
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.images import bench_image
from bench.system import BenchSystem, MachineCpu
from harness import procs
from harness.broker import BrokerVhost
from harness.broker_cluster import BrokerCluster
from harness.objectstore import PrivateStorageCluster
from harness.processes import PROJECT_DIR
from load_test.client import Submission
from load_test.results import COMPLETED, machine_info, summarize

OUT = PROJECT_DIR / "docs" / "capacity" / "measured.json"
DEFAULT_OPERATIONS = "resize,watermark"
# (label, image megapixels, operations, jobs in the batch)
RUNS = (
    ("2mp-default", "2", DEFAULT_OPERATIONS, 48),
    ("12mp-default", "12", DEFAULT_OPERATIONS, 32),
    ("24mp-default", "24", DEFAULT_OPERATIONS, 16),
    ("12mp-sharpen", "12", "resize,filter(name=sharpen),watermark", 32),
)
QUICK_RUNS = (("0.1mp-default", "0.1", DEFAULT_OPERATIONS, 4),)
SERVICES = ("api", "workers", "notifier")


def say(message: str) -> None:
    print(f"[capacity {time.strftime('%H:%M:%S')}] {message}", flush=True)


def broker_pids(cluster: BrokerCluster) -> list[int]:
    return [int((node.base_dir / "pid").read_text().strip()) for node in cluster.nodes]


def idle_cores(bench: BenchSystem, seconds: float = 10.0) -> dict[str, float]:
    """Cores each group uses with no job running (the brokers' and storage's background work)."""
    bench.cpu.start()
    time.sleep(seconds)
    return {group: round(ms / 1000 / seconds, 4) for group, ms in bench.cpu.per_job(1).items()}


def measure_run(
    bench: BenchSystem, image, operations: str, count: int, pids: dict[str, list[int]], idle_cores: dict[str, float]
) -> dict:
    client = bench.client()
    client.operations = operations
    warm = client.run_sync([Submission(image.path)] * 4)
    assert all(job.status == COMPLETED for job in warm), [job.error for job in warm]
    for group in SERVICES:
        for pid in pids[group]:
            procs.reset_peak_rss(pid)
    machine = MachineCpu()
    machine.start()
    bench.cpu.start()
    began = time.monotonic()
    jobs = client.run_sync([Submission(image.path)] * count)
    elapsed = time.monotonic() - began
    cpu_ms = bench.cpu.per_job(count)
    busy = machine.stop()
    bad = [job for job in jobs if job.status != COMPLETED]
    assert not bad, f"{len(bad)} jobs did not complete: {bad[0].error}"
    summary = summarize(jobs, bench.workers)
    with httpx.Client(base_url=bench.system.api_url, timeout=30) as http:
        record = http.get(f"/status/{jobs[0].job_id}").raise_for_status().json()
    return {
        "megapixels": round(image.megapixels, 2),
        "width": image.width,
        "height": image.height,
        "operations": operations,
        "jobs": count,
        "original_bytes": image.path.stat().st_size,
        "result_bytes": record["result"]["bytes"],
        "result_size": [record["result"]["width"], record["result"]["height"]],
        "cpu_ms_per_job": cpu_ms,
        # Less what the process spends idle (heartbeats, Raft ticks) over the batch's duration.
        "cpu_ms_per_job_net": {
            group: round(max(0.0, ms - idle_cores.get(group, 0.0) * elapsed * 1000 / count), 1)
            for group, ms in cpu_ms.items()
        },
        "batch_s": round(elapsed, 2),
        "img_s_on_this_machine": summary["throughput_img_s"],
        "machine_busy": busy,
        "peak_rss_mb": {group: max(procs.peak_rss_mb(pid) for pid in pids[group]) for group in SERVICES},
        "processing_ms_p50": summary["processing_ms"]["p50"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="one tiny image, a few jobs: checks that it works")
    args = parser.parse_args(argv)
    runs = QUICK_RUNS if args.quick else RUNS
    started = time.time()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="imgpipe-capacity-"))
    cluster = storage = bench = None
    try:
        say("starting a three-node RabbitMQ cluster and a SeaweedFS cluster")
        cluster = BrokerCluster().start()
        storage = PrivateStorageCluster(work / "seaweedfs").start()
        vhost = BrokerVhost(endpoint=cluster.seed.endpoint).create()
        storage_pids = [p.pid for p in storage._processes.values()]  # the bench meters them
        bench = BenchSystem(
            storage.endpoint, storage_pids, work / "logs", workers=2, vhost=vhost,
            env={
                "RABBITMQ_HOSTS": cluster.hosts(),
                "RABBITMQ_MANAGEMENT_PORT": str(cluster.management_port),
                "QUEUE_TYPE": "quorum",
            },
            broker_pids=broker_pids(cluster),
        )
        pids = {
            "api": [bench.system.services["api"].process.pid],
            "workers": bench.worker_pids,
            "notifier": [bench.system.services["notifier"].process.pid],
        }
        idle = idle_cores(bench)
        say(f"idle cores per group: {idle}")
        results = {}
        for label, size, operations, count in runs:
            image = bench_image(size, PROJECT_DIR / "results" / "bench" / "images")
            say(f"{label}: {count} jobs of {image.width}x{image.height}, {operations}")
            results[label] = measure_run(bench, image, operations, count, pids, idle)
            say(f"  CPU ms per job, net of idle: {results[label]['cpu_ms_per_job_net']}")
        idle_rss = {
            "broker_node_mb": max(procs.rss_mb(pid) for pid in broker_pids(cluster)),
            "storage_member_mb": {name: procs.rss_mb(p.pid) for name, p in storage._processes.items()},
        }
        document = {
            "command": "python -m bench.capacity" + (" --quick" if args.quick else ""),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 1),
            "machine": {**machine_info(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "setup": {
                "broker": "RabbitMQ 3-node cluster (one machine), quorum queues; broker CPU is all three nodes",
                "storage": "SeaweedFS cluster: master, 3 volume servers, filer + S3 gateway, replication 001",
                "services": "API, 2 workers (prefetch 1), notifier; 4 uploads in flight",
            },
            "idle_cores": idle,
            "runs": results,
            "memory_after_runs": idle_rss,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n")
        say(f"wrote {args.out} in {document['duration_s']} s")
    finally:
        if bench is not None:
            bench.close()
        if storage is not None:
            storage.stop()
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
