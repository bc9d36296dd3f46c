"""Compare load-test runs: a table in the terminal, PNG charts and a markdown report.

    python load_test/analyze_results.py                            # the latest series in results/
    python load_test/analyze_results.py results/scaling            # every run folder inside
    python load_test/analyze_results.py results/bulk_upload/a results/bulk_upload/b --out results/cmp

Charts (written when the runs have what they need):
    throughput_vs_workers.png   throughput per worker count, with the ideal linear line
    latency_vs_workers.png      latency p50/p95/p99 per worker count, and the worker's own time per job
    latency_distribution.png    cumulative distribution of latency per run
    queue_depth.png             messages waiting in the work queue over time (burst starts marked)
    bursts.png                  drain time and latency per burst (burst runs)
`report.md` embeds them after the comparison table. Default output folder: the folder given, when
a single one is given, else results/analysis. With no folder: the series (a folder of runs under
results/, e.g. results/bulk_upload or results/scaling) whose newest run is the newest of all.
"""

import argparse
import sys
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tools.project_python import use_project_python

    use_project_python("matplotlib")

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from load_test.cli import RESULTS_DIR
from load_test.results import SUMMARY_FILE, Run, find_runs, machine_info

PROJECT_DIR = Path(__file__).resolve().parents[1]
REPORT_FILE = "report.md"
DPI = 100
FIGSIZE = (7.5, 4.3)

Row = dict[str, str]


def per_worker_share(summary: dict) -> str:
    counts = summary.get("per_worker") or {}
    total = sum(counts.values())
    if not total:
        return "-"
    return " / ".join(f"{100 * n / total:.0f}%" for _, n in sorted(counts.items()))


def cpu_seconds_per_image(summary: dict) -> float | None:
    """CPU time the system under test (natively: supervisord's processes) spent per finished job."""
    cpu, duration = summary.get("cpu") or {}, summary.get("duration_s")
    finished = (summary.get("completed") or 0) + (summary.get("failed") or 0)
    if cpu.get("stack_pct") is None or not cpu.get("cores") or not duration or not finished:
        return None
    return cpu["stack_pct"] / 100 * cpu["cores"] * duration / finished


def cpu_ceiling(runs: list[Run]) -> tuple[float, float, int] | None:
    """(img/s the CPUs allow, median CPU-s per image, cores) over the runs that measured it."""
    costs = sorted(c for r in runs if (c := cpu_seconds_per_image(r.summary)) is not None)
    cores = next(((r.summary.get("cpu") or {}).get("cores") for r in runs if r.summary.get("cpu")), None)
    if not costs or not cores:
        return None
    median = (
        costs[len(costs) // 2]
        if len(costs) % 2
        else (costs[len(costs) // 2 - 1] + costs[len(costs) // 2]) / 2
    )
    return cores / median, median, cores


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table_rows(runs: list[Run]) -> list[Row]:
    rows = []
    for run in runs:
        s = run.summary
        latency, server = s.get("latency_ms", {}), s.get("server_total_ms", {})
        rows.append(
            {
                "run": run.label,
                "workers": _fmt(s.get("workers")),
                "jobs": _fmt(s.get("count")),
                "completed": _fmt(s.get("completed")),
                "failed": _fmt(s.get("failed")),
                "lost": _fmt(s.get("lost")),
                "duration s": _fmt(s.get("duration_s"), 1),
                "img/s": _fmt(s.get("throughput_img_s"), 2),
                "p50 ms": _fmt(latency.get("p50")),
                "p95 ms": _fmt(latency.get("p95")),
                "p99 ms": _fmt(latency.get("p99")),
                "worker p50 ms": _fmt((s.get("processing_ms") or {}).get("p50")),
                "server p50 ms": _fmt(server.get("p50")),
                "CPU-s/img": _fmt(cpu_seconds_per_image(s), 2),
                "others' CPU %": _fmt((s.get("cpu") or {}).get("other_pct")),
                "per-worker share": per_worker_share(s),
            }
        )
    return rows


def print_table(rows: list[Row], console: Console) -> None:
    table = Table(title="load-test runs (latency: client-observed upload start → job end)")
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("run", "per-worker share") else "right")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)


def markdown_table(rows: list[Row]) -> str:
    header = "| " + " | ".join(rows[0]) + " |"
    align = "| " + " | ".join("---" if c in ("run", "per-worker share") else "---:" for c in rows[0]) + " |"
    body = ["| " + " | ".join(row.values()) + " |" for row in rows]
    return "\n".join([header, align, *body])


def _by_workers(runs: list[Run]) -> list[Run]:
    """Bulk runs with a known worker count and a throughput, by worker count (bursts are paced, not
    saturating, so their throughput says nothing about scaling)."""
    return sorted(
        (
            r
            for r in runs
            if r.summary.get("tool") != "burst_test"
            and r.summary.get("workers")
            and r.summary.get("throughput_img_s")
        ),
        key=lambda r: r.summary["workers"],
    )


def _mean_by_workers(runs: list[Run], value) -> tuple[list[int], list[float]]:
    """Worker counts and the mean of `value(summary)` over the runs with that count."""
    groups: dict[int, list[float]] = {}
    for run in runs:
        groups.setdefault(run.summary["workers"], []).append(value(run.summary) or 0)
    workers = sorted(groups)
    return workers, [sum(groups[w]) / len(groups[w]) for w in workers]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def chart_throughput(runs: list[Run], out: Path, cores: int | None) -> Path | None:
    scaled = _by_workers(runs)
    if not scaled:
        return None
    workers, throughput = _mean_by_workers(scaled, lambda s: s["throughput_img_s"])
    base_w, base_t = workers[0], throughput[0]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(workers, throughput, "o-", color="tab:blue", linewidth=2, label="measured")
    if len(scaled) > len(workers):
        ax.plot(
            [r.summary["workers"] for r in scaled],
            [r.summary["throughput_img_s"] for r in scaled],
            ".",
            color="tab:blue",
            alpha=0.5,
            label="single runs",
        )
    top = max(workers)
    ax.plot(
        [0, top],
        [0, base_t * top / base_w],
        "--",
        color="tab:gray",
        label=f"ideal linear (from {base_w} worker{'s' if base_w > 1 else ''})",
    )
    for w, t in zip(workers, throughput, strict=True):
        ax.annotate(f"{t:.2f}", (w, t), textcoords="offset points", xytext=(0, 8), ha="center")
    if cores and cores <= top:
        ax.axvline(cores, color="tab:red", linestyle=":", label=f"CPU cores ({cores})")
    ceiling = cpu_ceiling(scaled)
    if ceiling:
        limit, cost, n = ceiling
        ax.axhline(
            limit,
            color="tab:orange",
            linestyle="-.",
            label=f"CPU ceiling: {n} cores ÷ {cost:.2f} CPU-s per image = {limit:.1f}/s",
        )
    ax.set_title("Throughput vs workers")
    ax.set_xlabel("workers")
    ax.set_ylabel("throughput (images/s)")
    ax.set_xticks(range(0, top + 1))
    ax.set_xlim(0, top + 0.5)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, out / "throughput_vs_workers.png")


def chart_latency_vs_workers(runs: list[Run], out: Path) -> Path | None:
    scaled = _by_workers(runs)
    if not scaled:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        workers, values = _mean_by_workers(scaled, lambda s, key=key: (s["latency_ms"].get(key) or 0) / 1000)
        ax.plot(workers, values, style, label=f"latency {key}")
    workers, processing = _mean_by_workers(
        scaled, lambda s: ((s.get("processing_ms") or {}).get("p50") or 0) / 1000
    )
    ax.plot(workers, processing, "x--", color="tab:gray", label="worker time per job p50")
    ax.set_title("Latency percentiles vs workers (upload start → job end)")
    ax.set_xlabel("workers")
    ax.set_ylabel("latency (s)")
    ax.set_xticks(workers)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out / "latency_vs_workers.png")


def chart_latency_distribution(runs: list[Run], out: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    plotted = False
    for run in runs:
        values = sorted(j.latency_ms / 1000 for j in run.jobs if j.finished and j.latency_ms is not None)
        if not values:
            continue
        fractions = [(i + 1) / len(values) for i in range(len(values))]
        ax.step(values, fractions, where="post", label=f"{run.label} (n={len(values)})")
        plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_title("Latency distribution (cumulative)")
    ax.set_xlabel("latency, upload start → job end (s)")
    ax.set_ylabel("fraction of jobs ended")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out / "latency_distribution.png")


def chart_queue_depth(runs: list[Run], out: Path) -> Path | None:
    sampled = [r for r in runs if r.queue]
    if not sampled:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for run in sampled:
        start = min(j.submitted_at for j in run.jobs) if run.jobs else run.queue[0].at
        times = [s.at - start for s in run.queue]
        (line,) = ax.plot(times, [s.ready for s in run.queue], label=f"{run.label}: waiting")
        for index, burst in enumerate(run.summary.get("bursts") or []):
            ax.axvline(
                burst["start_at"] - start,
                color=line.get_color(),
                linestyle=":",
                alpha=0.6,
                label=f"{run.label}: burst starts" if index == 0 else None,
            )
    ax.set_title("Work queue depth over time")
    ax.set_xlabel("time since the first upload (s)")
    ax.set_ylabel("messages waiting (ready)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out / "queue_depth.png")


def chart_bursts(runs: list[Run], out: Path) -> Path | None:
    burst_runs = [r for r in runs if r.summary.get("bursts")]
    if not burst_runs:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIGSIZE[0] + 2, FIGSIZE[1]))
    width = 0.8 / len(burst_runs)
    for offset, run in enumerate(burst_runs):
        bursts = run.summary["bursts"]
        xs = [b["burst"] + 1 + (offset - (len(burst_runs) - 1) / 2) * width for b in bursts]
        left.bar(xs, [b["drain_s"] or 0 for b in bursts], width, label=run.label)
        for key, marker in (("p50", "o"), ("p95", "s")):
            right.plot(
                [b["burst"] + 1 for b in bursts],
                [(b["latency_ms"].get(key) or 0) / 1000 for b in bursts],
                marker=marker,
                label=f"{run.label} {key}",
            )
    left.set_title("Time to drain each burst")
    left.set_xlabel("burst")
    left.set_ylabel("burst start → its last job ended (s)")
    right.set_title("Latency per burst")
    right.set_xlabel("burst")
    right.set_ylabel("latency (s)")
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, out / "bursts.png")


def scaling_notes(runs: list[Run], cores: int | None) -> list[str]:
    scaled = _by_workers(runs)
    if len({r.summary["workers"] for r in scaled}) < 2:
        return []
    base = scaled[0].summary
    notes = []
    for previous, current in itertools.pairwise(scaled):
        p, c = previous.summary, current.summary
        speedup = c["throughput_img_s"] / p["throughput_img_s"]
        p_latency, c_latency = p["latency_ms"]["p50"] / 1000, c["latency_ms"]["p50"] / 1000
        p_worker = _fmt((p.get("processing_ms") or {}).get("p50"))
        c_worker = _fmt((c.get("processing_ms") or {}).get("p50"))
        notes.append(
            f"{p['workers']} → {c['workers']} workers: throughput ×{speedup:.2f} "
            f"(ideal ×{c['workers'] / p['workers']:.2f}), latency p50 {p_latency:.1f} s → {c_latency:.1f} s, "
            f"worker time per job p50 {p_worker} → {c_worker} ms."
        )
    for run in scaled[1:]:
        s = run.summary
        efficiency = s["throughput_img_s"] / (base["throughput_img_s"] * s["workers"] / base["workers"])
        notes.append(
            f"{s['workers']} workers: {100 * efficiency:.0f}% of linear scaling from {base['workers']}."
        )
    ceiling = cpu_ceiling(scaled)
    if ceiling:
        limit, cost, n = ceiling
        notes.append(
            f"The system under test spent {cost:.2f} CPU-seconds per image (median over the runs: "
            f"API, S3 server, workers), so {n} cores can finish at most {n} ÷ {cost:.2f} = {limit:.1f} "
            "images/s, whatever the number of workers."
        )
    if cores:
        notes.append(
            f"This machine has {cores} CPU cores, shared by the workers, the API, RabbitMQ, "
            "the S3 server and the load client."
        )
    return notes


def burst_note(summary: dict) -> str:
    settings, bursts = summary.get("settings") or {}, summary["bursts"]
    size, interval = settings.get("burst_size"), settings.get("interval_s")
    throughput = summary.get("throughput_img_s") or 0
    if not size or not interval or not throughput:
        return ""
    offered = size / interval
    first_drain = bursts[0].get("drain_s")
    if first_drain and first_drain <= interval:
        verdict = "each burst drained before the next one arrived."
    else:
        verdict = (
            f"a burst needs about {size / throughput:.1f} s to drain at the measured throughput, longer "
            "than the interval, so the backlog (and each later burst's latency) grows burst after burst."
        )
    return (
        f"Offered load while the bursts last: {size} images every {interval:g} s = {offered:.1f} images/s, "
        f"against a measured throughput of {throughput:.2f} images/s: {verdict}"
    )


def write_report(runs: list[Run], rows: list[Row], charts: list[Path], out: Path, title: str) -> Path:
    machine = runs[0].summary.get("machine") or machine_info()
    lines = [
        f"# {title}",
        "",
        f"Generated {datetime.now().strftime('%Y-%m-%d %H:%M')} by `load_test/analyze_results.py` from "
        f"{len(runs)} run(s). Machine: {machine.get('cpus')} CPUs ({machine.get('cpu')}), "
        f"{machine.get('memory_gb')} GB RAM, {machine.get('os')}.",
        "",
        markdown_table(rows),
        "",
        "Latency is client-observed, from the start of the upload to the moment the client learns "
        "the job ended; *worker p50* is the worker's own time per job (`started_at → finished_at`), "
        "*server p50* the job record's `created_at → finished_at`. Throughput counts jobs that ended "
        "(completed or failed) over the time from the first upload to the last job's end. "
        "*CPU-s/img*: CPU time the system under test (the services `make run` starts; not RabbitMQ) "
        "spent per finished job. *per-worker share*: completed jobs per worker, in worker-name order. "
        "*others' CPU %*: share of the "
        "machine's CPU time (all cores) used during the run by processes other than the system under "
        "test, RabbitMQ and the load client: other users of the machine; a large value means the run "
        "competed with them.",
        "",
    ]
    notes = scaling_notes(runs, machine.get("cpus"))
    if notes:
        lines += ["## Scaling", "", *[f"- {n}" for n in notes], ""]
    burst_runs = [r for r in runs if r.summary.get("bursts")]
    for run in burst_runs:
        lines += [
            f"## Bursts: {run.label}",
            "",
            "| burst | jobs | upload s | drain s | p50 ms | p95 ms | failed | lost |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for b in run.summary["bursts"]:
            cells = [
                b["burst"] + 1,
                b["count"],
                _fmt(b["upload_s"], 2),
                _fmt(b["drain_s"], 2),
                _fmt(b["latency_ms"]["p50"]),
                _fmt(b["latency_ms"]["p95"]),
                b["failed"],
                b["lost"],
            ]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        lines += ["", burst_note(run.summary), ""]
    lines += ["## Charts", ""]
    for chart in charts:
        name = chart.stem.replace("_", " ")
        lines += [f"![{name}]({chart.name})", ""]
    lines += ["## Runs", ""]
    for run in runs:
        settings = run.summary.get("settings") or {}
        described = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
        described = described.replace(f"{PROJECT_DIR}/", "")
        lines.append(
            f"- `{run.label}` ({run.summary.get('tool')}, {run.summary.get('started_at')}): {described}"
        )
    path = out / REPORT_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def analyze(
    paths: list[Path], out: Path, title: str = "Load-test report", console: Console | None = None
) -> Path:
    """Reads the runs under `paths`, writes the charts and report.md into `out`; returns the report."""
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    runs = find_runs(paths)
    if not runs:
        raise SystemExit(f"error: no result folders (with summary.json) in {', '.join(map(str, paths))}")
    runs.sort(key=lambda r: (r.summary.get("workers") or 0, r.summary.get("started_at") or ""))
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(runs)
    print_table(rows, console)
    cores = (runs[0].summary.get("machine") or {}).get("cpus")
    charts = [
        chart
        for chart in (
            chart_throughput(runs, out, cores),
            chart_latency_vs_workers(runs, out),
            chart_latency_distribution(runs, out),
            chart_queue_depth(runs, out),
            chart_bursts(runs, out),
        )
        if chart is not None
    ]
    report = write_report(runs, rows, charts, out, title)
    lost = sum(r.summary.get("lost") or 0 for r in runs)
    if lost:
        console.print(f"[red]{lost} job(s) were lost across these runs[/red]")
    console.print(f"report: {report} ({len(charts)} charts)")
    return report


def latest_series(results: Path) -> Path | None:
    """The folder of runs (summary.json one level below) holding the newest run, searched to any depth."""
    newest: dict[Path, float] = {}
    for summary in results.rglob(SUMMARY_FILE):
        series = summary.parent.parent
        newest[series] = max(newest.get(series, 0.0), summary.stat().st_mtime)
    return max(newest, key=lambda series: newest[series]) if newest else None


def main(argv: list[str] | None = None, results: Path = RESULTS_DIR) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="result folders, or folders that contain them; default: the latest series"
    )
    parser.add_argument("--out", type=Path, help="where the charts and report.md go")
    parser.add_argument("--title", default="Load-test report")
    args = parser.parse_args(argv)
    if not args.paths:
        series = latest_series(results)
        if series is None:
            print(
                f"no load-test results in {_shown(results)} yet: run e.g. "
                "`python load_test/bulk_upload.py --count 100 --workers 3` first, or name result folders",
                file=sys.stderr,
            )
            return 1
        print(f"analysing the latest series, {_shown(series)} (name result folders to choose others)")
        args.paths = [series]
    out = args.out or (
        args.paths[0]
        if len(args.paths) == 1 and args.paths[0].is_dir()
        else results / "analysis"
    )
    analyze(args.paths, out, args.title)
    return 0


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)


if __name__ == "__main__":
    sys.exit(main())
