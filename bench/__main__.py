"""`python -m bench [--quick]`: every contender on the same images, one run; see bench/__init__.py.

Order: the in-process pair (limit, libvips) per size; then, with 1 and then 2 workers, the system and
Celery side by side, alternating which goes first per size so that load from outside falls on
both; the workers' memory on a 24 and a 50 MP image; prefetch compared; a py-spy profile of the
API and a worker. Writes bench.json, bench.md (the table) and bench.png to --out.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import profile, report
from bench.celery_bench import BenchCelery
from bench.images import BenchImage, bench_image
from bench.inprocess import InProcessBench
from bench.system import BenchSystem, EndToEnd
from common.settings import Settings
from load_test.client import Submission
from load_test.results import machine_info
from harness.objectstore import PrivateObjectStore
from harness.processes import PROJECT_DIR

RESULTS_DIR = PROJECT_DIR / "results" / "bench"


@dataclass(frozen=True)
class Plan:
    sizes: tuple[str, ...]
    iterations: dict[str, int]  # in-process: images per process per round
    rounds: int
    batch: dict[str, int]  # end to end: jobs per batch
    sequential: int  # end to end: jobs one at a time, for the p50
    workers: tuple[int, ...] = (1, 2)
    memory_sizes: tuple[str, ...] = ()
    prefetch: tuple[int, ...] = ()  # compared with the most workers
    prefetch_sizes: tuple[str, ...] = ()
    profile_size: str | None = None
    notes: dict = field(default_factory=dict)


FULL = Plan(
    sizes=("0.3", "2", "12", "24"),
    iterations={"0.3": 60, "2": 20, "12": 6, "24": 4},
    rounds=3,
    batch={"0.3": 80, "2": 48, "12": 24, "24": 16},
    sequential=9,
    memory_sizes=("24", "50"),
    prefetch=(1, 2, 4),
    prefetch_sizes=("2", "12"),
    profile_size="2",
)
QUICK = Plan(sizes=("0.1",), iterations={"0.1": 3}, rounds=1, batch={"0.1": 4}, sequential=2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one tiny size, a few jobs: checks that it works")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--prefetch", type=int, default=Settings(_env_file=None).prefetch_count,
                        help="the system's PREFETCH_COUNT for the main measurements (default: the system's)")
    parser.add_argument("--concurrency", type=int, default=4, help="client uploads in flight")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="in-process pool size")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.time()
    load_before = os.getloadavg()
    images = {label: bench_image(label, RESULTS_DIR / "images") for label in (*plan.sizes, *plan.memory_sizes)}

    say(f"in-process: {args.processes} processes, limit vs libvips")
    inprocess = run_inprocess(plan, images, args.processes)

    work_dir = Path(tempfile.mkdtemp(prefix="imgpipe-bench-"))
    (work_dir / "s3").mkdir()
    store = PrivateObjectStore(work_dir / "s3").start()
    try:
        pid = store._process.pid
        end_to_end = run_end_to_end(plan, images, args, store.endpoint, pid, args.out / "logs")
        memory = run_memory(plan, images, args, store.endpoint, pid, args.out / "logs")
        prefetch = run_prefetch(plan, images, args, store.endpoint, pid, args.out / "logs")
        profiled = run_profile(plan, images, args, store.endpoint, pid, args.out)
    finally:
        store.stop()
        shutil.rmtree(work_dir, ignore_errors=True)

    results = {
        "mode": "quick" if args.quick else "full",
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "machine": {**machine_info(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "duration_s": round(time.time() - started, 1),
        "settings": {
            "operations": "resize,watermark (fit 800×800, text 'imgpipe' bottom-right, opacity 0.5)",
            "output": "JPEG quality 85",
            "inprocess_processes": args.processes,
            "system_prefetch": args.prefetch,
            "client_concurrency": args.concurrency,
            "plan": asdict(plan),
        },
        "sizes": {
            label: report.size_figures(
                images[label], inprocess[label],
                {str(w): end_to_end["system"][w][label] for w in plan.workers},
                {str(w): end_to_end["celery"][w][label] for w in plan.workers},
            )
            for label in plan.sizes
        },
        "memory": memory,
        "prefetch": prefetch,
        "profile": profiled,
        "details": {
            "inprocess_rounds": {label: inprocess[label + ":rounds"] for label in plan.sizes},
            "system": {str(w): {l: asdict(r) for l, r in end_to_end["system"][w].items()} for w in plan.workers},
            "celery": {str(w): {l: asdict(r) for l, r in end_to_end["celery"][w].items()} for w in plan.workers},
        },
    }
    path = report.write(results, args.out)
    print(report.table(results))
    say(f"wrote {path} and {args.out / 'bench.png'} in {results['duration_s']:.0f} s")
    return 0


def run_inprocess(plan: Plan, images: dict[str, BenchImage], processes: int) -> dict:
    bench = InProcessBench({label: images[label].path for label in plan.sizes}, processes)
    figures: dict = {}
    try:
        for label in plan.sizes:
            measured = bench.measure(label, plan.iterations[label], plan.rounds)
            figures[label], figures[label + ":rounds"] = measured.img_s, measured.rounds
            say(f"  {label} MP: {measured.img_s}")
    finally:
        bench.close()
    return figures


def run_end_to_end(plan, images, args, endpoint: str, store_pid: int, logs: Path) -> dict:
    results: dict = {"system": {}, "celery": {}}
    celery = BenchCelery(endpoint, store_pid, logs, args.concurrency)
    try:
        for workers in plan.workers:
            say(f"end to end with {workers} worker(s): the system (prefetch {args.prefetch}) and Celery")
            celery.start_worker(workers)
            system = BenchSystem(endpoint, store_pid, logs, workers, args.prefetch, args.concurrency)
            results["system"][workers], results["celery"][workers] = {}, {}
            try:
                for index, label in enumerate(plan.sizes):
                    image = images[label].path
                    order = [("system", system), ("celery", celery)]
                    for name, contender in order if index % 2 == 0 else order[::-1]:
                        contender.warm_up(image)
                        measured = contender.measure(image, plan.batch[label], plan.sequential)
                        results[name][workers][label] = measured
                        say(f"  {label} MP {name}: {measured.img_s} img/s, p50 {measured.p50_ms} ms, "
                            f"busy {measured.machine_busy}, CPU ms/job {measured.cpu_ms_per_job}")
            finally:
                system.close()
    finally:
        celery.close()
    return results


def run_memory(plan, images, args, endpoint: str, store_pid: int, logs: Path) -> dict:
    if not plan.memory_sizes:
        return {}
    say(f"worker memory on {', '.join(plan.memory_sizes)} MP, one job each on a fresh worker")
    memory = {}
    for label in plan.memory_sizes:
        system = BenchSystem(endpoint, store_pid, logs, 1, args.prefetch)
        try:
            image = images[label]
            memory[label] = {
                "width": image.width, "height": image.height, "bytes": image.path.stat().st_size,
                "worker_peak_rss_mb": system.peak_rss_of_one_job(image.path),
            }
            say(f"  {label} MP: {memory[label]['worker_peak_rss_mb']} MB")
        finally:
            system.close()
    return memory


def run_prefetch(plan, images, args, endpoint: str, store_pid: int, logs: Path) -> dict:
    if not plan.prefetch:
        return {}
    workers = max(plan.workers)
    figures: dict = {"workers": workers}
    for prefetch in plan.prefetch:
        say(f"prefetch {prefetch} with {workers} workers")
        system = BenchSystem(endpoint, store_pid, logs, workers, prefetch, args.concurrency)
        try:
            for label in plan.prefetch_sizes:
                system.warm_up(images[label].path)
                measured = system.measure(images[label].path, plan.batch[label], 0)
                figures.setdefault(label, {})[str(prefetch)] = {
                    "img_s": measured.img_s, "batch_p50_ms": measured.batch_p50_ms,
                    "per_worker": measured.extra["per_worker"],
                }
                say(f"  {label} MP: {measured.img_s} img/s {measured.extra['per_worker']}")
        finally:
            system.close()
    return figures


def run_profile(plan, images, args, endpoint: str, store_pid: int, out: Path) -> dict:
    """One more batch at `profile_size` with 1 worker, the API and the worker under py-spy."""
    if plan.profile_size is None:
        return {}
    label = plan.profile_size
    count = plan.batch[label]
    say(f"profile: {count} jobs at {label} MP, 1 worker, API and worker under py-spy")
    system = BenchSystem(endpoint, store_pid, out / "logs", 1, args.prefetch, args.concurrency)
    try:
        image = images[label].path
        system.warm_up(image)
        api_pid = system.system.services["api"].process.pid
        spies = {
            "worker": profile.Profiler(system.worker_pids[0], out / "profile" / "worker.txt", idle=True).start(),
            "api_wall": profile.Profiler(api_pid, out / "profile" / "api-wall.txt", idle=True).start(),
            "api_gil": profile.Profiler(api_pid, out / "profile" / "api-gil.txt", gil=True).start(),
        }
        time.sleep(1)  # py-spy attaches
        measured = system.measure(image, count, 0)
        samples = {name: spy.stop() for name, spy in spies.items()}
    finally:
        system.close()
    handler = "JobHandler.__call__ ("
    upload = "upload (api/routes/jobs.py"
    worker = profile.breakdown(samples["worker"], profile.WORKER_PHASES, count, thread_has=handler)
    # Outside a job the handler thread waits for the next message; py-spy ran a little longer than
    # the batch, so that wait is the batch's duration less the time in jobs.
    worker["idle: waiting for a job"] = round(max(0.0, 1000 / measured.img_s - sum(worker.values())), 1)
    return {
        "size": label,
        "jobs": count,
        "workers": 1,
        "prefetch": args.prefetch,
        "img_s": measured.img_s,
        "cpu_ms_per_job": measured.cpu_ms_per_job,
        "worker_wall_ms_per_job": worker,
        "api_upload_wall_ms": profile.breakdown(
            samples["api_wall"], profile.UPLOAD_PHASES + (("other", None),), count, thread_has=upload, within=upload
        ),
        "api_gil_ms_per_upload": profile.breakdown(samples["api_gil"], profile.API_CPU_PHASES, count),
    }


if __name__ == "__main__":
    sys.exit(main())
