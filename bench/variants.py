"""`python -m bench.variants [--rounds N] [--quick]`: one job with 4 variants against 4 separate jobs
making the same outputs, on the same image, end to end.

One system (API, 2 workers, notifier, the bench's own SeaweedFS), one image per size (2 and 12 MP
photos, bench/images.py). In each round, both ways of getting the four outputs run one after the
other, the order alternating between rounds (as bench/ab.py does):

    variants   one upload with `variants` (the four outputs); the worker decodes the original once
    separate   four uploads of the same file, one per output, sent at once (both workers busy)

The time is the client's: first upload start → the last job seen completed (status long poll). The
figure is separate ÷ variants within each round (above 1: the variants job is faster), median and
spread over rounds; beside it, the same ratio of the CPU the system's processes spent (API, workers
with their image processes, notifier, object store): the work saved, which the wall clock shows
only when the cores are short of it (two idle workers make four separate jobs two at a time). A
shared machine is noisy: the figures are as measured.
"""

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.images import bench_image
from bench.report import ratio, write_json
from bench.system import BenchSystem
from common.variants import parse_variants
from harness.objectstore import PrivateObjectStore
from harness.processes import PROJECT_DIR
from worker.pipeline import decode_image, make_variant, process_variants

RESULTS_DIR = PROJECT_DIR / "results" / "bench"
# What a catalogue page needs of one photo: a square thumbnail, two widths, a large watermarked view.
OUTPUTS = {
    "thumb": {"operations": "resize(width=200,height=200,fit=cover)", "output_format": "webp", "quality": 80},
    "small": {"operations": "resize(width=480)", "output_format": "jpeg", "quality": 85},
    "medium": {"operations": "resize(width=1024)", "output_format": "webp", "quality": 80},
    "large": {"operations": "resize(width=1600),watermark", "output_format": "jpeg", "quality": 85},
}
WAYS = ("variants", "separate")
POLL_S = 30


def upload(client: httpx.Client, image: Path, form: dict[str, str]) -> str:
    response = client.post("/upload", files={"file": (image.name, image.read_bytes())}, data=form)
    response.raise_for_status()
    job_id: str = response.json()["job_id"]
    return job_id


def wait_completed(client: httpx.Client, job_id: str) -> dict:
    while True:
        status: dict = client.get(f"/status/{job_id}", params={"wait": POLL_S}, timeout=POLL_S + 10).json()
        if status["status"] == "completed":
            return status
        if status["status"] == "failed":
            raise RuntimeError(f"job {job_id} failed: {status['error']}")


def one_job(client: httpx.Client, image: Path, form: dict[str, str]) -> dict:
    return wait_completed(client, upload(client, image, form))


def forms(way: str) -> list[dict[str, str]]:
    """The upload forms that make the four outputs: one with variants, or one per output."""
    if way == "variants":
        return [{"variants": json.dumps(OUTPUTS)}]
    return [{key: str(value) for key, value in output.items()} for output in OUTPUTS.values()]


def timed(system: BenchSystem, image: Path, way: str) -> tuple[float, float]:
    """Seconds from the first upload's start to the last job completed, and the CPU seconds the
    system's processes spent meanwhile; the outputs are checked."""
    jobs = forms(way)
    with system.system.http as client, ThreadPoolExecutor(len(jobs)) as pool:
        system.cpu.start()
        started = time.perf_counter()
        statuses = list(pool.map(lambda form: one_job(client, image, form), jobs))
        elapsed = time.perf_counter() - started
        cpu_ms = system.cpu.per_job(1)
    made = sorted((r["width"], r["height"], r["format"]) for s in statuses for r in s["results"])
    if len(made) != len(OUTPUTS):
        raise RuntimeError(f"{way}: {len(made)} outputs instead of {len(OUTPUTS)}")
    return elapsed, sum(ms for process, ms in cpu_ms.items() if process != "client") / 1000


def made_alike(system: BenchSystem, image: Path) -> bool:
    """Both ways make the same four outputs (sizes and formats)."""
    outputs = {}
    for way in WAYS:
        with system.system.http as client:
            statuses = [one_job(client, image, form) for form in forms(way)]
        outputs[way] = sorted((r["width"], r["height"], r["format"]) for s in statuses for r in s["results"])
    return outputs["variants"] == outputs["separate"]


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def measure(system: BenchSystem, image: Path, rounds: int) -> dict:
    if not made_alike(system, image):  # also the warm-up
        raise RuntimeError("the variants job and the separate jobs made different outputs")
    per_round = []
    for index in range(rounds):
        order = WAYS if index % 2 == 0 else WAYS[::-1]
        measured = {way: timed(system, image, way) for way in order}
        seconds = {way: round(elapsed, 3) for way, (elapsed, _) in measured.items()}
        cpu = {f"{way}_cpu_s": round(cpu_s, 3) for way, (_, cpu_s) in measured.items()}
        per_round.append({
            "first": order[0], **seconds, **cpu,
            "separate_vs_variants": ratio(seconds["separate"], seconds["variants"]),
            "cpu_separate_vs_variants": ratio(cpu["separate_cpu_s"], cpu["variants_cpu_s"]),
        })
        print(f"[variants] {image.name} round {index + 1} ({order[0]} first): {per_round[-1]}", flush=True)
    return {
        "separate_vs_variants": spread([r["separate_vs_variants"] or 0.0 for r in per_round]),
        "cpu_separate_vs_variants": spread([r["cpu_separate_vs_variants"] or 0.0 for r in per_round]),
        "variants_s": spread([r["variants"] for r in per_round]),
        "separate_s": spread([r["separate"] for r in per_round]),
        "per_round": per_round,
    }


def pipeline_split(image: Path, repeats: int) -> dict:
    """Where the pipeline's CPU goes, in this process, best of `repeats` (ms): the variants job's one
    decode and each variant made from it (serially, so each is its own), against each output made
    alone from the file as a separate job does. Encoding is the same work both ways; what the
    variants job saves is decoding, less the larger draft scale its largest output needs."""
    data = image.read_bytes()
    variants = parse_variants(json.dumps(OUTPUTS), len(OUTPUTS), 10, 85)
    best: dict[str, float] = {}

    def clock(name: str, work: Callable[[], object]) -> object:
        started = time.process_time()
        made = work()
        best[name] = min(best.get(name, float("inf")), (time.process_time() - started) * 1000)
        return made

    for _ in range(repeats):
        decoded = clock("decode", lambda: decode_image(data, variants, 10**9, None, "srgb", "strip", 1))
        for index, variant in enumerate(variants):
            clock(f"variant {variant.name}", lambda: make_variant(decoded, index, variant, None, 10**9, "srgb", None))  # noqa: B023
            clock(f"alone {variant.name}", lambda: process_variants(data, [variant], 10**9))  # noqa: B023
    variants_ms = sum(ms for name, ms in best.items() if not name.startswith("alone"))
    separate_ms = sum(ms for name, ms in best.items() if name.startswith("alone"))
    return {
        "ms": {name: round(ms, 1) for name, ms in best.items()},
        "variants_ms": round(variants_ms, 1), "separate_ms": round(separate_ms, 1),
        "separate_vs_variants": ratio(separate_ms, variants_ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", nargs="*", default=["2", "12"], help="megapixels of the images")
    parser.add_argument("--quick", action="store_true", help="one small image, one round: checks that it works")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    sizes, rounds = (["0.3"], 1) if args.quick else (args.sizes, args.rounds)
    images = {label: bench_image(label, RESULTS_DIR / "images") for label in sizes}
    work = Path(tempfile.mkdtemp(prefix="imgpipe-variants-"))
    (work / "s3").mkdir()
    store = PrivateObjectStore(work / "s3").start()
    started = time.time()
    results: dict = {}
    try:
        assert store._process is not None  # the bench meters the store's process
        system = BenchSystem(store.endpoint, store._process.pid, work / "logs", 2)
        try:
            for label, image in images.items():
                results[label] = {
                    "image": f"{image.width}x{image.height}", **measure(system, image.path, rounds),
                    "pipeline_in_process": pipeline_split(image.path, 1 if args.quick else 5),
                }
        finally:
            system.close()
    finally:
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "command": "python -m bench.variants" + (" --quick" if args.quick else f" --rounds {rounds}"),
        "outputs": OUTPUTS, "rounds": rounds, "duration_s": round(time.time() - started, 1), "sizes": results,
    }
    path = write_json(report, args.out / "variants.json")
    for label, figures in results.items():
        split = figures["pipeline_in_process"]
        print(
            f"[variants] {label} MP: separate ÷ variants, time {figures['separate_vs_variants']}, "
            f"CPU {figures['cpu_separate_vs_variants']}; the pipeline alone {split['separate_vs_variants']} "
            f"({split['separate_ms']} ÷ {split['variants_ms']} ms: {split['ms']})"
        )
    print(f"[variants] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
