"""`python -m bench.revisions --before REV [--after REV]`: two revisions of the code side by side.

What bench/ab.py does for two settings, for two commits: each revision in a checkout of its own
(`git worktree`, removed afterwards; `--after` defaults to this working tree), and `--runs` runs
alternating which goes first, each on a fresh system of that checkout (bench/one_revision.py, with
this virtualenv's packages). Figures are after ÷ before, per pair of runs, median and spread:

    --mode workload   thumbor's workload: img/s, p50, CPU per image of each process and in all
    --mode upload     POST /upload one at a time, no worker: the upload's p50

    python -m bench.revisions --before HEAD~1 --name notifier-read
    python -m bench.revisions --before HEAD~1 --mode upload --rounds 3 --count 100
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_json
from harness.processes import PROJECT_DIR

RESULTS_DIR = PROJECT_DIR / "results" / "bench" / "revisions"
IMAGES_DIR = PROJECT_DIR / "results" / "bench" / "images"
SIDE = Path(__file__).with_name("one_revision.py")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=True).stdout.strip()


def run_side(checkout: Path, mode: str, rounds: int, count: int) -> list[dict]:
    """One fresh system of `checkout`, its rounds' figures."""
    finished = subprocess.run(
        [sys.executable, str(SIDE), mode, "--rounds", str(rounds), "--count", str(count), "--images", str(IMAGES_DIR)],
        cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, text=True, timeout=1800,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"{checkout}: {finished.stderr[-2000:]}")
    return [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]


def figures(rounds: list[dict]) -> dict[str, float]:
    """A run's medians, flattened: img_s, p50_ms, cpu_<process> and cpu_all, or upload_p50_ms."""
    flat: list[dict[str, float]] = []
    for measured in rounds:
        row = {key: value for key, value in measured.items() if isinstance(value, int | float)}
        cpu = measured.get("cpu_ms_per_image", {})
        row.update({f"cpu_{process}": ms for process, ms in cpu.items()})
        if cpu:
            row["cpu_all"] = sum(cpu.values())
        flat.append(row)
    return {key: round(statistics.median(row[key] for row in flat), 3) for key in flat[0]}


def compare(pairs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """after ÷ before for each figure, per pair of runs: median, min and max."""
    ratios: dict[str, dict[str, float]] = {}
    for key in pairs[0]["before"]:
        values = [pair["after"][key] / pair["before"][key] for pair in pairs if pair["before"][key]]
        if values:
            ratios[key] = {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
                           "max": round(max(values), 3)}
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="a commit (HEAD~1, a hash, a branch)")
    parser.add_argument("--after", help="a commit; this working tree when not given")
    parser.add_argument("--mode", choices=("workload", "upload"), default="workload")
    parser.add_argument("--runs", type=int, default=4, help="fresh systems per side")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per run")
    parser.add_argument("--count", type=int, default=240, help="images per round")
    parser.add_argument("--name", default="revisions")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    revisions = {"before": git("rev-parse", args.before), "after": git("rev-parse", args.after) if args.after else None}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="imgpipe-revisions-") as work:
        checkouts = {"after": PROJECT_DIR}
        for side, commit in revisions.items():
            if commit is not None:
                checkouts[side] = Path(work) / side
                git("worktree", "add", "--detach", str(checkouts[side]), commit)
        try:
            pairs = []
            for index in range(args.runs):
                order = ("before", "after") if index % 2 == 0 else ("after", "before")
                pair = {side: figures(run_side(checkouts[side], args.mode, args.rounds, args.count)) for side in order}
                print(f"[revisions] run {index + 1} ({order[0]} first): {pair}", flush=True)
                pairs.append(pair)
        finally:
            for side, checkout in checkouts.items():
                if revisions.get(side) is not None:
                    git("worktree", "remove", "--force", str(checkout))
    results = {
        "command": "python -m bench.revisions " + " ".join(argv if argv is not None else sys.argv[1:]),
        "before": revisions["before"], "after": revisions["after"] or "working tree at " + git("rev-parse", "HEAD"),
        "mode": args.mode, "runs": args.runs, "rounds": args.rounds, "count": args.count,
        "duration_s": round(time.time() - started, 1),
        "after_vs_before": compare(pairs),
        "medians": {side: figures([pair[side] for pair in pairs]) for side in ("before", "after")},
        "per_run": pairs,
    }
    path = write_json(results, args.out / f"{args.name}.json")
    print(f"[revisions] after ÷ before: {results['after_vs_before']}")
    print(f"[revisions] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
