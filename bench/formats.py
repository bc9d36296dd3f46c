"""What an output format costs: milliseconds per image for JPEG, AVIF and `auto` out of the
pipeline, beside libvips writing JPEG and AVIF, on the benchmark's photo-like JPEGs.

    python -m bench.formats                 # 2 and 12 MP, 3 rounds: results/bench/formats.json
    python -m bench.formats --sizes 0.3 --rounds 1

Two jobs per size: `fit` (the system's default operations, resize into 800×800 and a watermark)
and `full` (no operation: the whole picture re-encoded). libvips runs `thumbnail_buffer` (fit) or
`new_from_buffer` (full) and saves, one thread (VIPS_CONCURRENCY=1), no watermark. One process;
rounds alternate the contenders' order and each keeps its best round, so the ratios to the
pipeline's JPEG in the same run are what to read, not the milliseconds of a busy machine.
"""

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from bench.images import bench_image
from common.operations import DEFAULT_BOX, parse_operations

QUALITY = 85
MAX_PIXELS = 100_000_000
JOBS = {"fit": "resize,watermark", "full": ""}
# The pipeline runs libavif at speed 8 of 0-10 (worker/encoding.py); libvips' effort (0-9) sets the
# same encoder's speed as 9 - effort, so effort 1 is the like-for-like setting (its default is 4).
VIPS_AVIF_EFFORT = 1


def contenders(job: str) -> dict[str, Callable[[bytes], bytes]]:
    import pyvips

    from common.imaging import guard_decompression
    from worker.pipeline import process_image

    guard_decompression(MAX_PIXELS)
    pyvips.cache_set_max(0)
    operations = parse_operations(JOBS[job], 20) if JOBS[job] else []

    def pipeline(output_format: str) -> Callable[[bytes], bytes]:
        return lambda data: process_image(data, operations, output_format, QUALITY, MAX_PIXELS).data

    def vips_load(data: bytes) -> "pyvips.Image":
        if job == "fit":
            return pyvips.Image.thumbnail_buffer(data, DEFAULT_BOX, height=DEFAULT_BOX, size="down")
        return pyvips.Image.new_from_buffer(data, "", access="sequential")

    return {
        "pipeline jpeg": pipeline("jpeg"),
        "pipeline avif": pipeline("avif"),
        "pipeline auto": pipeline("auto"),
        "libvips jpeg": lambda data: vips_load(data).jpegsave_buffer(Q=QUALITY),
        "libvips avif": lambda data: vips_load(data).heifsave_buffer(
            compression="av1", Q=QUALITY, effort=VIPS_AVIF_EFFORT
        ),
    }


def measure(data: bytes, job: str, rounds: int) -> dict[str, dict[str, float]]:
    functions = contenders(job)
    sizes = {name: len(function(data)) for name, function in functions.items()}  # warm-up, and the sizes
    best: dict[str, float] = {}
    names = list(functions)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            functions[name](data)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    reference = best["pipeline jpeg"]
    return {
        name: {"ms": round(best[name] * 1000, 2), "vs_pipeline_jpeg": round(best[name] / reference, 2),
               "bytes": sizes[name]}
        for name in names
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,12", help="megapixels, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=Path, default=Path("results/bench/images"))
    parser.add_argument("--output", type=Path, default=Path("results/bench/formats.json"))
    args = parser.parse_args()
    os.environ["VIPS_CONCURRENCY"] = "1"
    report: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for label in args.sizes.split(","):
        image = bench_image(label.strip(), args.images)
        data = image.read()
        report[f"{label.strip()} MP"] = {job: measure(data, job, args.rounds) for job in JOBS}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'size':>6} {'job':>4} {'contender':>14} {'ms':>8} {'× pipeline jpeg':>16} {'bytes':>9}")
    for size, jobs in report.items():
        for job, figures in jobs.items():
            for name, figure in figures.items():
                print(f"{size:>6} {job:>4} {name:>14} {figure['ms']:>8} {figure['vs_pipeline_jpeg']:>16} "
                      f"{figure['bytes']:>9}")


if __name__ == "__main__":
    main()
