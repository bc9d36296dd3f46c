"""`python -m bench.ab --b KEY=VALUE ... [--a KEY=VALUE ...]`: two settings of the system side by side.

Both systems run at once (API, 2 workers, notifier each, on vhosts of their own, one SeaweedFS), and
are driven one at a time on thumbor's workload (bench/thumbor_bench.py: 2K photos of every aspect fit
into 512, two clients one job at a time each), in alternating rounds. The figures are B ÷ A within each
round, median and spread: throughput, p50, and the CPU each process spends per image, the measure that
load from outside moves least. Any environment variable of the services can differ: the system's
settings, and uvicorn's own (`UVICORN_ACCESS_LOG=false`, `UVICORN_LOOP=uvloop`, `UVICORN_HTTP=httptools`).

    python -m bench.ab --a UVICORN_ACCESS_LOG=true --b UVICORN_ACCESS_LOG=false --name access-log
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.images import long_side_images
from bench.report import ratio, write_json
from bench.system import BenchSystem
from bench.thumbor_bench import CLIENTS, Run, SystemOnThumborsWorkload
from harness.objectstore import PrivateObjectStore
from harness.processes import PROJECT_DIR

RESULTS_DIR = PROJECT_DIR / "results" / "bench" / "ab"


def parse_env(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SystemExit(f"not KEY=VALUE: {item!r}")
        pairs[key] = value
    return pairs


def summarise(runs: list[dict[str, Run]]) -> dict:
    """B ÷ A per round for throughput, p50 and each process's CPU per image: median and spread."""

    def spread(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}

    ratios: dict = {
        "img_s": spread([ratio(r["b"].img_s, r["a"].img_s) or 0.0 for r in runs]),
        "p50_ms": spread([ratio(r["b"].p50_ms, r["a"].p50_ms) or 0.0 for r in runs]),
        "cpu_s_per_image": spread([ratio(r["b"].cpu_s_per_image, r["a"].cpu_s_per_image) or 0.0 for r in runs]),
    }
    for process in runs[0]["a"].cpu_ms_per_image:
        values = [ratio(r["b"].cpu_ms_per_image[process], r["a"].cpu_ms_per_image[process]) for r in runs]
        if all(value is not None for value in values):
            ratios[f"cpu_{process}"] = spread([value for value in values if value is not None])
    medians = {
        side: {
            "img_s": statistics.median(r[side].img_s for r in runs),
            "p50_ms": statistics.median(r[side].p50_ms or 0.0 for r in runs),
            "cpu_ms_per_image": {
                process: round(statistics.median(r[side].cpu_ms_per_image[process] for r in runs), 2)
                for process in runs[0][side].cpu_ms_per_image
            },
        }
        for side in ("a", "b")
    }
    return {"b_vs_a": ratios, "medians": medians}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="*", default=[], metavar="KEY=VALUE", help="the reference's environment")
    parser.add_argument("--b", nargs="*", default=[], metavar="KEY=VALUE", help="the change's environment")
    parser.add_argument("--name", default="ab")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--count", type=int, default=80, help="images per side per round")
    parser.add_argument("--long-side", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    envs = {"a": parse_env(args.a), "b": parse_env(args.b)}
    images = [image.path for image in long_side_images(args.long_side, PROJECT_DIR / "results" / "bench" / "images")]
    work = Path(tempfile.mkdtemp(prefix="imgpipe-ab-"))
    (work / "s3").mkdir()
    store = PrivateObjectStore(work / "s3").start()
    systems: dict[str, BenchSystem] = {}
    runs: list[dict[str, Run]] = []
    started = time.time()
    try:
        assert store._process is not None  # the bench meters the store's process
        for side, env in envs.items():
            systems[side] = BenchSystem(
                store.endpoint, store._process.pid, work / f"logs-{side}", 2, concurrency=CLIENTS, env=env
            )
        drivers = {side: SystemOnThumborsWorkload(system) for side, system in systems.items()}
        for driver in drivers.values():
            driver.run(images, 2 * CLIENTS)  # warm-up
        for index in range(args.rounds):
            order = ("a", "b") if index % 2 == 0 else ("b", "a")
            measured = {side: drivers[side].run(images, args.count) for side in order}
            runs.append(measured)
            print(
                f"[ab] round {index + 1} ({order[0]} first): "
                + "; ".join(f"{side} {m.img_s} img/s, p50 {m.p50_ms} ms, CPU ms/img {m.cpu_ms_per_image}"
                            for side, m in sorted(measured.items())),
                flush=True,
            )
    finally:
        for system in systems.values():
            system.close()
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "command": "python -m bench.ab " + " ".join(f"--{side} {' '.join(f'{k}={v}' for k, v in env.items())}"
                                                    for side, env in envs.items()),
        "a": envs["a"], "b": envs["b"], "rounds": args.rounds, "count": args.count,
        "duration_s": round(time.time() - started, 1),
        **summarise(runs),
        "per_round": [{side: run.__dict__ for side, run in measured.items()} for measured in runs],
    }
    path = write_json(results, args.out / f"{args.name}.json")
    print(f"[ab] B ÷ A: {results['b_vs_a']}")
    print(f"[ab] medians: {results['medians']}")
    print(f"[ab] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
