"""One side of `python -m bench.revisions`: a fresh system of the checkout it is run in, measured.

Run as a file with PYTHONPATH set to the checkout (bench/revisions.py does): the project's modules,
and so the services it starts, are that checkout's. It therefore uses only what older revisions
have too. Prints one JSON line per round.

    workload  thumbor's workload (2K photos fit into 512, two clients, upload → completion event →
              GET /result) on API + 2 workers + notifier: img/s, p50, CPU per image by process
    upload    POST /upload one at a time on API + notifier, no worker: the upload's p50
"""

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.images import long_side_images
from bench.system import BenchSystem
from bench.thumbor_bench import CLIENTS, OPERATIONS, SystemOnThumborsWorkload
from harness.objectstore import PrivateObjectStore


def workload(system: BenchSystem, images: list[Path], rounds: int, count: int) -> None:
    driver = SystemOnThumborsWorkload(system)
    driver.run(images, 2 * CLIENTS)  # warm-up
    for _ in range(rounds):
        run = driver.run(images, count)
        print(json.dumps({"img_s": run.img_s, "p50_ms": run.p50_ms, "cpu_ms_per_image": run.cpu_ms_per_image}),
              flush=True)


def uploads(system: BenchSystem, images: list[Path], rounds: int, count: int) -> None:
    files = [(path.name, path.read_bytes()) for path in images]
    with httpx.Client(base_url=system.system.api_url, timeout=60) as client:
        for index in range(2):  # warm-up
            client.post("/upload", files={"file": files[index % len(files)]}, data={"operations": OPERATIONS})
        for _ in range(rounds):
            latencies = []
            for index in range(count):
                started = time.perf_counter()
                response = client.post("/upload", files={"file": files[index % len(files)]},
                                       data={"operations": OPERATIONS})
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 202:
                    raise RuntimeError(f"upload: HTTP {response.status_code} {response.text[:200]}")
            print(json.dumps({"upload_p50_ms": round(statistics.median(latencies), 2)}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("workload", "upload"))
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--images", type=Path, required=True)
    args = parser.parse_args()
    images = [image.path for image in long_side_images(2048, args.images)]
    work = Path(tempfile.mkdtemp(prefix="imgpipe-revision-"))
    (work / "s3").mkdir()
    store = PrivateObjectStore(work / "s3").start()
    try:
        assert store._process is not None  # its CPU is metered
        workers = 2 if args.mode == "workload" else 0
        system = BenchSystem(store.endpoint, store._process.pid, work / "logs", workers, concurrency=CLIENTS)
        try:
            (workload if args.mode == "workload" else uploads)(system, images, args.rounds, args.count)
        finally:
            system.close()
    finally:
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
