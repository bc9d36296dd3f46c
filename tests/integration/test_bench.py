"""The benchmark's quick mode runs end to end and writes what the table in docs/performance.md is made from.

It checks that the bench works, never how fast anything is: the figures come from a shared,
noisy machine.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bench.images import ASPECTS
from harness.processes import PROJECT_DIR

pytestmark = pytest.mark.integration

FIGURES = (
    "limit_img_s", "libvips_img_s", "system_p50_ms", "celery_p50_ms", "worker_peak_rss_mb",
    "pipeline_vs_libvips", "system_vs_limit", "system_vs_celery",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        # The first run on a machine also makes thumbor's virtualenv (bench/thumbor-requirements.txt).
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), out


def test_bench_quick_writes_every_figure_per_size(quick_run) -> None:
    results, _ = quick_run
    assert results["mode"] == "quick"
    assert results["machine"]["cpus"] >= 1
    ((_label, figures),) = results["sizes"].items()
    for name in FIGURES:
        assert isinstance(figures[name], float) and figures[name] > 0, name
    for name in ("system_img_s", "celery_img_s"):
        assert set(figures[name]) == {"1", "2"}
        assert all(isinstance(value, float) and value > 0 for value in figures[name].values())
    for run in results["details"]["system"].values():
        (one_size,) = run.values()
        phases = one_size["extra"]["one_at_a_time_p50_ms"]
        # The p50 is of the same jobs as the split's latency; every phase took some time and less than it.
        assert phases["latency"] == pytest.approx(one_size["p50_ms"], rel=1e-2)
        for phase in ("upload", "queue_wait", "processing", "detection_lag"):
            assert 0 <= phases[phase] < phases["latency"], (phase, phases)


def test_bench_quick_ratios_follow_from_the_figures(quick_run) -> None:
    results, _ = quick_run
    (figures,) = results["sizes"].values()
    assert figures["pipeline_vs_libvips"] == pytest.approx(figures["limit_img_s"] / figures["libvips_img_s"], rel=1e-2)
    assert figures["system_vs_limit"] == pytest.approx(figures["system_img_s"]["2"] / figures["limit_img_s"], rel=1e-2)
    assert figures["system_vs_celery"] == pytest.approx(
        figures["system_img_s"]["2"] / figures["celery_img_s"]["2"], rel=1e-2
    )


def test_bench_quick_measures_the_pipeline_and_libvips_on_every_aspect(quick_run) -> None:
    results, _ = quick_run
    (figures,) = results["sizes"].values()
    assert [image["aspect"] for image in figures["images"]] == list(ASPECTS)
    for image in figures["images"]:
        if image["aspect"] != "odd":
            assert image["width"] / image["height"] == pytest.approx(ASPECTS[image["aspect"]], rel=1e-2)
        else:
            assert image["width"] % 2 == 1 and image["height"] % 2 == 1
    for aspect in ASPECTS:
        limit, libvips = figures["limit_img_s_by_aspect"][aspect], figures["libvips_img_s_by_aspect"][aspect]
        assert limit > 0 and libvips > 0
        assert figures["pipeline_vs_libvips_by_aspect"][aspect] == pytest.approx(limit / libvips, rel=1e-2)
        limit_cpu, libvips_cpu = figures["limit_cpu_ms_by_aspect"][aspect], figures["libvips_cpu_ms_by_aspect"][aspect]
        assert limit_cpu > 0 and libvips_cpu > 0
        assert figures["pipeline_vs_libvips_cpu_by_aspect"][aspect] == pytest.approx(libvips_cpu / limit_cpu, rel=1e-2)
    assert figures["pipeline_vs_libvips_cpu"] == pytest.approx(
        sum(figures["libvips_cpu_ms_by_aspect"].values()) / sum(figures["limit_cpu_ms_by_aspect"].values()), rel=1e-2
    )
    # The size's rate is the whole set's: between the slowest and the fastest aspect.
    assert min(figures["limit_img_s_by_aspect"].values()) <= figures["limit_img_s"]
    assert figures["limit_img_s"] <= max(figures["limit_img_s_by_aspect"].values())


def test_bench_quick_measures_thumbors_workload_in_process_on_every_aspect(quick_run) -> None:
    results, _ = quick_run
    fit512 = results["fit512"]
    assert [image["aspect"] for image in fit512["images"]] == list(ASPECTS)
    assert all(max(image["width"], image["height"]) > 512 for image in fit512["images"])
    for aspect in ASPECTS:
        assert fit512["pipeline_vs_libvips_by_aspect"][aspect] == pytest.approx(
            fit512["limit_img_s_by_aspect"][aspect] / fit512["libvips_img_s_by_aspect"][aspect], rel=1e-2
        )
        assert fit512["limit_cpu_ms_by_aspect"][aspect] > 0


def test_bench_quick_runs_thumbor_against_the_system(quick_run) -> None:
    results, _ = quick_run
    thumbor = results["thumbor"]
    assert len(thumbor["images"]) == len(ASPECTS)
    for name in ("thumbor", "system"):
        for figure in ("img_s", "p50_ms", "cpu_s_per_image"):
            assert isinstance(thumbor[f"{name}_{figure}"], float) and thumbor[f"{name}_{figure}"] > 0, (name, figure)
    for entry in thumbor["rounds"]:
        assert entry["thumbor"]["count"] == entry["system"]["count"] == thumbor["count_per_round"]
        # One thumbor server per client: both worked, whatever the kernel would have balanced.
        servers = entry["thumbor"]["cpu_ms_per_image"]
        assert set(servers) == {"thumbor-1", "thumbor-2"} and all(ms > 0 for ms in servers.values()), servers
        ratio = entry["system"]["img_s"] / entry["thumbor"]["img_s"]
        assert entry["system_vs_thumbor"] == pytest.approx(ratio, rel=1e-2)
        assert entry["system_p50_vs_thumbor"] == pytest.approx(
            entry["system"]["p50_ms"] / entry["thumbor"]["p50_ms"], rel=1e-2
        )
    low, high = thumbor["system_vs_thumbor_spread"]
    assert low <= thumbor["system_vs_thumbor"] <= high
    assert set(thumbor["system_cpu_ms_per_image"]) == {"api", "workers", "notifier", "objectstore"}


def test_bench_quick_writes_the_table_and_a_chart(quick_run) -> None:
    results, out = quick_run
    table = (out / "bench.md").read_text()
    assert table.startswith(f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['cpu']}")
    assert "\n| size |" in table and f"{next(iter(results['sizes']))} MP" in table
    assert "| pipeline ÷ libvips" in table and "| 3:2 |" in table and "| thumbor |" in table
    assert "| one job at a time, 2 workers: p50 ms |" in table
    assert "px, fit 512 (thumbor's workload) |" in table
    with Image.open(out / "bench.png") as chart:
        assert chart.format == "PNG" and chart.width > 400 and chart.height > 300


def test_bench_variants_quick_compares_one_job_with_four(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.variants", "--quick", "--out", str(tmp_path)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    results = json.loads((tmp_path / "variants.json").read_text())
    assert len(results["outputs"]) == 4 and results["rounds"] == 1
    ((_label, figures),) = results["sizes"].items()
    (measured,) = figures["per_round"]
    assert measured["variants"] > 0 and measured["separate"] > 0
    assert measured["separate_vs_variants"] == pytest.approx(measured["separate"] / measured["variants"], rel=1e-2)
    assert measured["variants_cpu_s"] > 0 and measured["separate_cpu_s"] > 0
    assert measured["cpu_separate_vs_variants"] == pytest.approx(
        measured["separate_cpu_s"] / measured["variants_cpu_s"], rel=1e-2
    )
    split = figures["pipeline_in_process"]
    stages = {f"{way} {name}" for way in ("variant", "alone") for name in results["outputs"]}
    assert set(split["ms"]) == {"decode", *stages}
    assert split["variants_ms"] == pytest.approx(
        sum(ms for name, ms in split["ms"].items() if not name.startswith("alone")), abs=0.5
    )
    assert split["separate_vs_variants"] == pytest.approx(split["separate_ms"] / split["variants_ms"], rel=1e-2)


def test_message_cost_meters_the_broker_and_the_client_per_size_and_queue_type() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.message_cost", "--count", "5"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    lines = finished.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"{queue_type} queue, {size}" for queue_type in ("classic", "quorum") for size in ("600 KB", "2 KB")
    ]
    for line in lines:
        figures = ast.literal_eval(line.split(": ", 1)[1])
        assert set(figures) == {"client_cpu_ms", "broker_cpu_ms"}
        assert all(value >= 0 for value in figures.values())


def test_wakeup_times_a_round_trip_after_each_idle_gap() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.wakeup", "--count", "3"], cwd=PROJECT_DIR, capture_output=True, text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    figures = json.loads(finished.stdout.splitlines()[-1])["round_trip_us_by_idle_ms"]
    assert list(figures) == ["0", "1", "10", "40", "200"]
    for figure in figures.values():
        assert 0 < figure["p50_us"] <= figure["max_us"]


def test_storage_cost_profiles_the_store_it_meters() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.storage_cost", "--count", "40", "--size", "600 KB", "--profile", "--top", "3"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    lines = finished.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["PUT 600 KB", "GET 600 KB"]
    sampled = next(line for line in lines if line.startswith("SeaweedFS CPU profile:"))
    assert float(sampled.split(": ")[1].split(" s ")[0]) > 0
    for title in ("by package", "by function"):
        shares = next(line for line in lines if line.startswith(f"{title}: ")).split(": ", 1)[1].split("; ")
        percents = [float(share.rsplit(" ", 2)[1]) for share in shares]
        assert 1 <= len(percents) <= 3 and percents == sorted(percents, reverse=True) and sum(percents) <= 100.5


def test_revisions_measures_two_checkouts_in_turn_and_removes_them(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.revisions", "--before", "HEAD", "--mode", "upload", "--runs", "2",
         "--rounds", "1", "--count", "3", "--out", str(tmp_path), "--name", "quick"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True).stdout.strip()
    assert results["before"] == head and results["after"].startswith("working tree")
    firsts = [next(iter(pair)) for pair in results["per_run"]]
    assert firsts == ["before", "after"]
    ratios = [pair["after"]["upload_p50_ms"] / pair["before"]["upload_p50_ms"] for pair in results["per_run"]]
    assert results["after_vs_before"]["upload_p50_ms"]["median"] == pytest.approx(sum(ratios) / 2, abs=2e-3)
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=PROJECT_DIR, capture_output=True, text=True).stdout
    assert "imgpipe-revisions" not in worktrees
