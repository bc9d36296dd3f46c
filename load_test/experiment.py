"""One command per experiment, ending in results/<experiment>/report.md with its charts.

    python -m load_test.experiment scaling --workers 1 3 5 --count 80     # make experiment-scaling
    python -m load_test.experiment burst --workers 2 --burst-size 50 --interval 5 --bursts 3

Natively: starts the stack (`tools/stack.sh run`) if it is not running and stops it afterwards;
if it was running, uses it and puts its worker count back at the end. Every run uses the same
generated image set (cached under results/images/). Each worker count gets a warm-up of a few
unrecorded jobs, so the first measured job does not pay for a cold worker.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from common.settings import settings
from load_test import analyze_results, bulk_upload, burst_test
from load_test.cli import RESULTS_DIR, check_api, console
from load_test.system import PROJECT_DIR, Broker, stack_running, wait_for_quiet_machine
from test_images.generate import PROFILES, generate

DEFAULT_OPERATIONS = "resize(width=1920,height=1920),filter(name=sharpen),watermark"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiment", choices=["scaling", "burst"])
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts (scaling: 1 3 5; burst: 2)")
    parser.add_argument("--count", type=int, default=80, help="scaling: jobs per worker count")
    parser.add_argument("--burst-size", type=int, default=50)
    parser.add_argument("--interval", type=float, default=5)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="client uploads in flight")
    parser.add_argument("--operations", default=DEFAULT_OPERATIONS)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="medium", help="image sizes")
    parser.add_argument("--image-count", type=int, default=40, help="distinct images in the set")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="default: results/<experiment>")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=300,
        help="before each run, wait up to this many s for other processes to use < 20%% of the CPUs",
    )
    return parser.parse_args(argv)


def stack(*command: str) -> None:
    subprocess.run([str(PROJECT_DIR / "tools" / "stack.sh"), *command], cwd=PROJECT_DIR, check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workers = args.workers or ([1, 3, 5] if args.experiment == "scaling" else [2])
    out = args.out or RESULTS_DIR / args.experiment
    console.print(f"image set: {args.image_count} '{args.profile}' images, seed {args.seed}")
    images = generate(args.image_count, args.seed, args.profile, progress=True)

    started_here = not stack_running()
    if started_here:
        stack("run", str(workers[0]))
    check_api(settings.api_public_url)
    broker = Broker(settings)
    workers_before = broker.consumers()
    broker.close()

    if out.exists():
        shutil.rmtree(out)
    common = [
        "--images",
        str(images),
        "--operations",
        args.operations,
        "--concurrency",
        str(args.concurrency),
    ]
    status = 0
    try:
        for count in workers:
            run_dir = out / f"workers-{count}"
            console.rule(f"{args.experiment}: {count} worker(s)")
            other = wait_for_quiet_machine(20, args.quiet_wait)
            if other is not None and other > 20:
                console.print(
                    f"[yellow]warning: other processes use {other:.0f}% of the CPUs; "
                    "this run competes with them (see the report)[/yellow]"
                )
            if args.experiment == "scaling":
                code = bulk_upload.main(
                    [
                        *common,
                        "--count",
                        str(args.count),
                        "--workers",
                        str(count),
                        "--warmup",
                        str(count),
                        "--out",
                        str(run_dir),
                        "--label",
                        f"{count} worker{'s' if count > 1 else ''}",
                    ]
                )
            else:
                code = burst_test.main(
                    [
                        *common,
                        "--burst-size",
                        str(args.burst_size),
                        "--interval",
                        str(args.interval),
                        "--bursts",
                        str(args.bursts),
                        "--workers",
                        str(count),
                        "--out",
                        str(run_dir),
                        "--label",
                        f"{args.bursts}×{args.burst_size} every {args.interval:g} s, {count} workers",
                    ]
                )
            status = status or code
        title = {
            "scaling": "Scaling experiment: throughput and latency vs workers",
            "burst": "Burst experiment: queue depth and drain time",
        }[args.experiment]
        analyze_results.analyze([out], out, title)
    finally:
        if started_here:
            stack("stop")
        elif workers_before:
            stack("scale", str(workers_before))
    return status


if __name__ == "__main__":
    sys.exit(main())
