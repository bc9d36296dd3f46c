"""The soak's soak.json, report.md and soak.png (bench/soak.py)."""

from pathlib import Path

from bench.report import save_figure, write_json


def summary(results: dict) -> str:
    """The verdicts as Markdown: what was asked, what was measured, pass or not."""
    v = results["verdicts"]
    passed = v["pass"]
    mark = {True: "yes", False: "**no**"}
    settings = results["settings"]
    lines = [
        (
            f"Soak: {settings['minutes']:g} min at {results['rate_img_s']:.2f} img/s ({settings['load']:.0%} of the "
            f"measured {results['capacity_img_s']:.2f} img/s), {settings['workers']} workers, {settings['images']} "
            f"images ({settings['profile']}); {results['jobs']} jobs."
        ),
        "",
        "| check | measured | met |",
        "| --- | --- | --- |",
        (
            f"| no job lost | {v['lost']} lost, {v['rejected']} refused, {v['completed']} completed, "
            f"{v['failed']} failed "
            f"| {mark[passed['no_job_lost']]} |"
        ),
        (
            "| resident memory grows < 10 % (median of the last quarter vs the first after warm-up) | "
            + ", ".join(f"{name} {growth:+.1%}" for name, growth in v["rss_growth"].items())
            + f" | {mark[passed['memory_flat']]} |"
        ),
        (
            f"| p99 latency steady (second half ≤ 1.5× first) | {_ms(v['p99_ms_first_half'])} → "
            f"{_ms(v['p99_ms_second_half'])} ms (×{v['p99_ratio']}) | {mark[passed['p99_steady']]} |"
        ),
        (
            "| open file descriptors constant (≤ 5 above warm-up) | "
            + ", ".join(f"{name} +{growth}" for name, growth in v["fd_growth"].items())
            + f" | {mark[passed['fds_constant']]} |"
        ),
        (
            f"| RabbitMQ connections and channels constant | connections {v['connections_seen']}, "
            f"channels {v['channels_seen']} | {mark[passed['broker_connections_constant']]} |"
        ),
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = results["samples"]
    at = [s["at"] / 60 for s in samples]
    figure, ((memory, latency), (fds, broker)) = plt.subplots(2, 2, figsize=(12, 8))
    for name in samples[0]["rss_mb"] if samples else ():
        memory.plot(at, [s["rss_mb"][name] for s in samples], label=name)
        fds.plot(at, [s["fds"][name] for s in samples], label=name)
    memory.set_title("resident memory (MB; a worker with its image process)")
    fds.set_title("open file descriptors")
    windows = results["latency_windows"]
    starts = [w["from_s"] / 60 for w in windows]
    for key in ("p50_ms", "p99_ms"):
        latency.plot(starts, [w[key] for w in windows], marker="o", label=key.replace("_ms", ""))
    latency.set_title("latency of the jobs submitted in each window (ms)")
    for key in ("connections", "channels", "queued"):
        broker.plot(at, [s[key] for s in samples], label=key if key != "queued" else "work queue depth")
    broker.set_title("RabbitMQ: the vhost's connections, channels; work queue depth")
    warm_up = results["settings"]["minutes"] * results["settings"]["warm_up_share"]
    for axes in (memory, latency, fds, broker):
        axes.axvline(warm_up, color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("minutes")
        axes.legend(fontsize=8)
    figure.suptitle(f"soak: {results['rate_img_s']:.2f} img/s for {results['settings']['minutes']:g} min "
                    "(dotted: end of warm-up)")
    save_figure(figure, path)


def write(results: dict, out_dir: Path) -> Path:
    path = write_json(results, out_dir / "soak.json")
    chart(results, out_dir / "soak.png")
    (out_dir / "report.md").write_text(
        "# Soak\n\n" + summary(results) + f"\n\n`{results['command']}`, {results['duration_s']:.0f} s in all.\n\n"
        "![soak](soak.png)\n"
    )
    return path
