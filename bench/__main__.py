"""`python -m bench [--quick]`: every contender on the same images, one run; see bench/__init__.py.

Order: the in-process pair (limit, libvips) per size; then, with 1 and then 2 workers, the system and
Celery side by side, alternating which goes first per size so that load from outside falls on
both; thumbor against the system on 2K photos fit into 512 (bench/thumbor_bench.py, alternating rounds);
the workers' memory on a 24 and a 50 MP image; prefetch compared; a py-spy profile of the API and a
worker. Every size is a set of five aspects (bench/images.py). Writes bench.json, bench.md (the tables)
and bench.png to --out.
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
from bench.images import BenchImage, bench_image, bench_images, long_side_images
from bench.inprocess import CONTENDERS, CONTENDERS_512, InProcessBench
from bench.system import BenchSystem
from bench.thumbor_bench import SystemOnThumborsWorkload, Thumbor, compare
from common.settings import Settings
from harness.objectstore import PrivateObjectStore
from harness.processes import PROJECT_DIR
from load_test.results import machine_info

RESULTS_DIR = PROJECT_DIR / "results" / "bench"
FIT512 = "fit512"  # thumbor's workload in-process: the pipeline and libvips fit 2K photos into 512×512


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
    thumbor_long_side: int = 2048  # thumbor's workload: photos of this longer side fit into 512×512
    thumbor_count: int = 160  # images per contender per round
    thumbor_rounds: int = 3
    fit512_iterations: int = 12  # in-process, per aspect, on thumbor's workload
    notes: dict = field(default_factory=dict)


FULL = Plan(
    sizes=("0.3", "2", "12", "24"),
    iterations={"0.3": 30, "2": 10, "12": 3, "24": 2},  # per aspect: five images per size
    rounds=3,
    batch={"0.3": 80, "2": 48, "12": 24, "24": 16},
    sequential=9,
    memory_sizes=("24", "50"),
    prefetch=(1, 2, 4),
    prefetch_sizes=("2", "12"),
    profile_size="2",
)
QUICK = Plan(
    sizes=("0.1",), iterations={"0.1": 3}, rounds=1, batch={"0.1": 4}, sequential=2,
    thumbor_long_side=640, thumbor_count=6, thumbor_rounds=1, fit512_iterations=3,
)


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
    images = {label: bench_images(label, RESULTS_DIR / "images") for label in plan.sizes}
    big = {label: bench_image(label, RESULTS_DIR / "images") for label in plan.memory_sizes}

    say(f"in-process: {args.processes} processes, limit vs libvips")
    fit512 = long_side_images(plan.thumbor_long_side, RESULTS_DIR / "images")
    inprocess = run_inprocess(plan, images, fit512, args.processes)

    work_dir = Path(tempfile.mkdtemp(prefix="imgpipe-bench-"))
    (work_dir / "s3").mkdir()
    store = PrivateObjectStore(work_dir / "s3").start()
    try:
        pid = store._process.pid
        end_to_end = run_end_to_end(plan, images, args, store.endpoint, pid, args.out / "logs")
        thumbor = run_thumbor(plan, args, store.endpoint, pid, args.out / "logs")
        memory = run_memory(plan, big, args, store.endpoint, pid, args.out / "logs")
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
        "fit512": report.inprocess_figures(fit512, inprocess[FIT512]),
        "thumbor": thumbor,
        "memory": memory,
        "prefetch": prefetch,
        "profile": profiled,
        "details": {
            "inprocess_rounds": {label: inprocess[label + ":rounds"] for label in (*plan.sizes, FIT512)},
            "system": {str(w): {s: asdict(r) for s, r in end_to_end["system"][w].items()} for w in plan.workers},
            "celery": {str(w): {s: asdict(r) for s, r in end_to_end["celery"][w].items()} for w in plan.workers},
        },
    }
    path = report.write(results, args.out)
    print(report.table(results))
    say(f"wrote {path} and {args.out / 'bench.png'} in {results['duration_s']:.0f} s")
    return 0


def run_inprocess(plan: Plan, images: dict[str, list[BenchImage]], fit512: list[BenchImage], processes: int) -> dict:
    """Per size: each contender's rate on the whole set (every aspect once), and per aspect; the same for
    thumbor's workload (2K photos fit into 512, key "fit512")."""
    sets = {**{label: images[label] for label in plan.sizes}, FIT512: fit512}
    bench = InProcessBench({_key(name, image): image.path for name, set_ in sets.items() for image in set_}, processes)
    figures: dict = {}
    try:
        for name, set_ in sets.items():
            contenders, iterations = (CONTENDERS_512, plan.fit512_iterations) if name == FIT512 else (
                CONTENDERS, plan.iterations[name]
            )
            by_aspect, rounds = {}, {}
            for image in set_:
                measured = bench.measure(_key(name, image), iterations, plan.rounds, contenders)
                rates = {
                    **dict(zip(("limit", "libvips"), (measured.img_s[c] for c in contenders), strict=True)),
                    **dict(
                        zip(("limit_cpu_ms", "libvips_cpu_ms"), (measured.cpu_ms[c] for c in contenders), strict=True)
                    ),
                }
                by_aspect[image.aspect], rounds[image.aspect] = rates, measured.rounds
                say(f"  {name} {image.aspect} ({image.width}×{image.height}): {rates}")
            figures[name] = {**report.set_rates(by_aspect), "by_aspect": by_aspect}
            figures[name + ":rounds"] = rounds
    finally:
        bench.close()
    return figures


def _key(set_name: str, image: BenchImage) -> str:
    return f"{set_name} {image.aspect}"


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
                    image = [each.path for each in images[label]]
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


def run_thumbor(plan: Plan, args: argparse.Namespace, endpoint: str, store_pid: int, logs: Path) -> dict:
    folder = RESULTS_DIR / "images"
    images = [image.path for image in long_side_images(plan.thumbor_long_side, folder)]
    say(f"thumbor's workload: {len(images)} photos of {plan.thumbor_long_side} px fit into 512, thumbor vs the system")
    thumbor = Thumbor(folder, logs)
    system = BenchSystem(endpoint, store_pid, logs, 2, args.prefetch, concurrency=2)
    try:
        figures = compare(thumbor, SystemOnThumborsWorkload(system), images, plan.thumbor_count, plan.thumbor_rounds)
    finally:
        system.close()
        thumbor.close()
    for entry in figures["rounds"]:
        say(f"  {entry['first']} first: thumbor {entry['thumbor']['img_s']} img/s p50 {entry['thumbor']['p50_ms']} ms, "
            f"system {entry['system']['img_s']} img/s p50 {entry['system']['p50_ms']} ms")
    return figures


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
                paths = [each.path for each in images[label]]
                system.warm_up(paths)
                measured = system.measure(paths, plan.batch[label], 0)
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
        image = [each.path for each in images[label]]
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
            samples["api_wall"], (*profile.UPLOAD_PHASES, ("other", None)), count, thread_has=upload, within=upload
        ),
        "api_gil_ms_per_upload": profile.breakdown(samples["api_gil"], profile.API_CPU_PHASES, count),
    }


if __name__ == "__main__":
    sys.exit(main())
