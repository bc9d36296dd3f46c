"""bench.json, the table and the chart."""

import json
from pathlib import Path

from bench.system import LATENCY_PHASES

CONTENDERS = (
    ("limit_img_s", None, "limit (pipeline in-process)"),
    ("libvips_img_s", None, "libvips (pyvips)"),
    ("system_img_s", "1", "system, 1 worker"),
    ("system_img_s", "2", "system, 2 workers"),
    ("celery_img_s", "1", "Celery, 1 process"),
    ("celery_img_s", "2", "Celery, 2 processes"),
)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """To three significant figures: three decimals made 0.0196 (the system against the limit on a
    busy machine) into 0.02."""
    if not numerator or not denominator:
        return None
    return float(f"{numerator / denominator:.3g}")


def set_rates(by_aspect: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each contender's images per second on the whole set, one image of each aspect in turn: the
    count over the summed time per image (a harmonic mean), so a slow aspect weighs as it costs."""
    contenders = ("limit", "libvips")
    return {
        name: round(len(by_aspect) / sum(1 / rates[name] for rates in by_aspect.values()), 2) for name in contenders
    }


def inprocess_figures(images: list, inprocess: dict) -> dict:
    """The pipeline (limit) and libvips on a set of images, one per aspect: the set's rates and per aspect."""
    by_aspect = inprocess["by_aspect"]
    return {
        "images": [
            {"aspect": each.aspect, "width": each.width, "height": each.height, "bytes": each.path.stat().st_size}
            for each in images
        ],
        "limit_img_s": inprocess["limit"],
        "libvips_img_s": inprocess["libvips"],
        "limit_img_s_by_aspect": {aspect: rates["limit"] for aspect, rates in by_aspect.items()},
        "libvips_img_s_by_aspect": {aspect: rates["libvips"] for aspect, rates in by_aspect.items()},
        "pipeline_vs_libvips": ratio(inprocess["limit"], inprocess["libvips"]),
        "pipeline_vs_libvips_by_aspect": {
            aspect: ratio(rates["limit"], rates["libvips"]) for aspect, rates in by_aspect.items()
        },
        # CPU per image: a busy shared machine moves img/s (the scheduler shares cores per thread, and
        # libvips keeps a helper thread) far more than it moves CPU time; > 1: the pipeline is cheaper.
        "limit_cpu_ms_by_aspect": {aspect: rates["limit_cpu_ms"] for aspect, rates in by_aspect.items()},
        "libvips_cpu_ms_by_aspect": {aspect: rates["libvips_cpu_ms"] for aspect, rates in by_aspect.items()},
        "pipeline_vs_libvips_cpu": ratio(
            sum(rates["libvips_cpu_ms"] for rates in by_aspect.values()),
            sum(rates["limit_cpu_ms"] for rates in by_aspect.values()),
        ),
        "pipeline_vs_libvips_cpu_by_aspect": {
            aspect: ratio(rates["libvips_cpu_ms"], rates["limit_cpu_ms"]) for aspect, rates in by_aspect.items()
        },
    }


def size_figures(
    images: list, inprocess: dict, system: dict, celery: dict
) -> dict:
    """The per-size entry of bench.json from the measurements: `images` one per aspect (the first,
    4:3, names the size), `inprocess` set rates and `by_aspect`, `system`/`celery` workers → EndToEnd."""
    image = images[0]
    system_img_s = {w: result.img_s for w, result in system.items()}
    celery_img_s = {w: result.img_s for w, result in celery.items()}
    most = max(system)  # the most workers measured: the figures compared are those
    system_p50, celery_p50 = system[most].p50_ms, celery[most].p50_ms
    return {
        "width": image.width,
        "height": image.height,
        "megapixels": round(image.megapixels, 2),
        "bytes": image.path.stat().st_size,
        **inprocess_figures(images, inprocess),
        "system_img_s": system_img_s,
        "celery_img_s": celery_img_s,
        "system_p50_ms": system_p50,
        "celery_p50_ms": celery_p50,
        "worker_peak_rss_mb": max(result.peak_rss_mb for result in system.values()),
        "celery_peak_rss_mb": max(result.peak_rss_mb for result in celery.values()),
        "system_vs_limit": ratio(system_img_s[most], inprocess["limit"]),
        "system_vs_celery": ratio(system_img_s[most], celery_img_s[most]),
        "system_vs_celery_by_workers": {w: ratio(system_img_s[w], celery_img_s.get(w)) for w in system_img_s},
        "p50_system_vs_celery": ratio(system_p50, celery_p50),
    }


def table(results: dict) -> str:
    """Markdown tables: one row per size, then pipeline ÷ libvips per size and aspect."""
    header = (
        "| size | limit img/s | libvips img/s | system img/s (1 / 2 workers) | Celery img/s (1 / 2) "
        "| p50 ms system / Celery | pipeline ÷ libvips | system ÷ limit | system ÷ Celery | worker peak RSS MB |"
    )
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for label, s in results["sizes"].items():
        lines.append(
            f"| {label} MP ({len(s['images'])} aspects, {s['width']}×{s['height']} at 4:3) "
            f"| {s['limit_img_s']:.1f} | {s['libvips_img_s']:.1f} "
            f"| {_pair(s['system_img_s'])} | {_pair(s['celery_img_s'])} "
            f"| {_num(s['system_p50_ms'], 0)} / {_num(s['celery_p50_ms'], 0)} "
            f"| {_num(s['pipeline_vs_libvips'], 2)} | {_num(s['system_vs_limit'], 2)} "
            f"| {_num(s['system_vs_celery'], 2)} | {_num(s['worker_peak_rss_mb'], 0)} |"
        )
    tables = [machine_line(results["machine"]), "\n".join(lines), aspect_table(results), latency_table(results)]
    if results.get("thumbor"):
        tables.append(thumbor_table(results["thumbor"]))
    return "\n\n".join(table for table in tables if table)


def machine_line(machine: dict) -> str:
    """Where the figures come from: ratios against libvips move with the CPU's vector sets."""
    cpu = machine.get("cpu", "?")
    details = [part for part in (machine.get("cpu_id"), ", ".join(machine.get("simd", []))) if part]
    if details:
        cpu += f" ({'; '.join(details)})"
    load = machine.get("loadavg_before")
    line = f"Machine: {machine.get('cpus')} CPUs, {cpu}, {machine.get('memory_gb')} GB"
    return line + (f"; load average {load[0]:.2f} before the run." if load else ".")


def thumbor_table(figures: dict) -> str:
    """Thumbor's workload: the medians of the rounds, the ratios with their spread."""
    lines = [
        f"Thumbor's workload ({figures['workload']}), median of {len(figures['rounds'])} alternating rounds:",
        "",
        "| contender | img/s | p50 ms | p95 ms | server CPU-s per image |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("thumbor", "system"):
        lines.append(
            f"| {name} | {figures[name + '_img_s']:.1f} | {figures[name + '_p50_ms']:.0f} "
            f"| {figures[name + '_p95_ms']:.0f} | {figures[name + '_cpu_s_per_image']:.4f} |"
        )
    low, high = figures["system_vs_thumbor_spread"]
    p50_low, p50_high = figures["system_p50_vs_thumbor_spread"]
    lines += [
        "",
        f"system ÷ thumbor (throughput): {figures['system_vs_thumbor']:.2f} (rounds {low:.2f}–{high:.2f}); "
        f"system p50 ÷ thumbor p50: {figures['system_p50_vs_thumbor']:.2f} (rounds {p50_low:.2f}–{p50_high:.2f}); "
        "the system's CPU ms per image: "
        + ", ".join(f"{process} {ms:.1f}" for process, ms in figures["system_cpu_ms_per_image"].items()),
    ]
    return "\n".join(lines)


def latency_table(results: dict) -> str:
    """The system's p50 for one job at a time, with the most workers, and the p50 of each phase of
    it; "" for results without the split (older bench.json)."""
    by_workers = results.get("details", {}).get("system", {})
    if not by_workers:
        return ""
    most = max(by_workers, key=int)
    rows = [
        (label, run["extra"]["one_at_a_time_p50_ms"])
        for label, run in by_workers[most].items()
        if "one_at_a_time_p50_ms" in run.get("extra", {})
    ]
    if not rows:
        return ""
    lines = [
        f"| one job at a time, {most} workers: p50 ms | upload → completion seen | upload (→ 202) "
        "| queued (accepted → started) | processing (started → finished) | finished → seen by the client |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, phases in rows:
        cells = [_num(phases[phase], 1) for phase in LATENCY_PHASES]
        lines.append(f"| {label} MP | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def aspect_table(results: dict) -> str:
    """pipeline ÷ libvips (limit img/s / libvips img/s) per size and aspect."""
    aspects = list(next(iter(results["sizes"].values()))["pipeline_vs_libvips_by_aspect"])
    header = (
        "| pipeline ÷ libvips: img/s ratio (limit / libvips img/s); CPU ratio (libvips / pipeline CPU ms) | "
        + " | ".join(aspects) + " |"
    )
    lines = [header, "|" + " --- |" * (len(aspects) + 1)]
    rows = {f"{label} MP, fit 800 + watermark": s for label, s in results["sizes"].items()}
    if results.get("fit512"):
        longest = max(results["fit512"]["images"][0]["width"], results["fit512"]["images"][0]["height"])
        rows[f"photos of {longest} px, fit 512 (thumbor's workload)"] = results["fit512"]
    for name, s in rows.items():
        cells = [
            f"{_num(s['pipeline_vs_libvips_by_aspect'][a], 2)} ({s['limit_img_s_by_aspect'][a]:.1f} / "
            f"{s['libvips_img_s_by_aspect'][a]:.1f}); CPU {_num(s['pipeline_vs_libvips_cpu_by_aspect'][a], 2)} "
            f"({s['libvips_cpu_ms_by_aspect'][a]:.1f} / {s['limit_cpu_ms_by_aspect'][a]:.1f})"
            for a in aspects
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pair(values: dict) -> str:
    return " / ".join(f"{values[key]:.1f}" for key in sorted(values))


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["sizes"])
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), height_ratios=(3, 2))
    width = 0.8 / len(CONTENDERS)
    for index, (key, workers, label) in enumerate(CONTENDERS):
        values = [
            results["sizes"][s][key] if workers is None else results["sizes"][s][key].get(workers, 0)
            for s in sizes
        ]
        offset = (index - len(CONTENDERS) / 2 + 0.5) * width
        top.bar([i + offset for i in range(len(sizes))], values, width, label=label)
    top.set_yscale("log")
    top.set_ylabel("images / second (log)")
    top.set_xticks(range(len(sizes)), [f"{s} MP" for s in sizes])
    top.set_title(f"resize to 800×800 + watermark, JPEG q85 — {results['machine']['cpus']} cores")
    top.legend(fontsize=8, ncols=3)
    for index, (key, label) in enumerate((("system_p50_ms", "system"), ("celery_p50_ms", "Celery"))):
        values = [results["sizes"][s][key] or 0 for s in sizes]
        bottom.bar([i + (index - 0.5) * 0.35 for i in range(len(sizes))], values, 0.35, label=label)
    bottom.set_ylabel("p50 latency, one job at a time (ms)")
    bottom.set_xticks(range(len(sizes)), [f"{s} MP" for s in sizes])
    bottom.legend(fontsize=8)
    save_figure(figure, path)


def save_figure(figure, path: Path) -> None:
    """A matplotlib figure as a PNG at `path`, then closed."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_json(results: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def write(results: dict, out_dir: Path) -> Path:
    path = write_json(results, out_dir / "bench.json")
    (out_dir / "bench.md").write_text(table(results) + "\n")
    chart(results, out_dir / "bench.png")
    return path
