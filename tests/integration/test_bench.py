"""The benchmark's quick mode runs end to end and writes what the table in docs/performance.md is made from.

It checks that the bench works, never how fast anything is: the figures come from a shared,
noisy machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

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
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=240,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), out


def test_bench_quick_writes_every_figure_per_size(quick_run) -> None:
    results, _ = quick_run
    assert results["mode"] == "quick"
    assert results["machine"]["cpus"] >= 1
    (label, figures), = results["sizes"].items()
    for name in FIGURES:
        assert isinstance(figures[name], float) and figures[name] > 0, name
    for name in ("system_img_s", "celery_img_s"):
        assert set(figures[name]) == {"1", "2"}
        assert all(isinstance(value, float) and value > 0 for value in figures[name].values())


def test_bench_quick_ratios_follow_from_the_figures(quick_run) -> None:
    results, _ = quick_run
    (figures,) = results["sizes"].values()
    assert figures["pipeline_vs_libvips"] == pytest.approx(figures["limit_img_s"] / figures["libvips_img_s"], rel=1e-2)
    assert figures["system_vs_limit"] == pytest.approx(figures["system_img_s"]["2"] / figures["limit_img_s"], rel=1e-2)
    assert figures["system_vs_celery"] == pytest.approx(
        figures["system_img_s"]["2"] / figures["celery_img_s"]["2"], rel=1e-2
    )


def test_bench_quick_writes_the_table_and_a_chart(quick_run) -> None:
    results, out = quick_run
    table = (out / "bench.md").read_text()
    assert table.startswith("| size |") and f"{next(iter(results['sizes']))} MP" in table
    with Image.open(out / "bench.png") as chart:
        assert chart.format == "PNG" and chart.width > 400 and chart.height > 300
