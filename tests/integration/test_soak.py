"""`make soak` in quick form end to end: the real system under steady load for half a minute, the
report and its chart. It checks that the soak works and that no job is lost, never how fast anything
is, nor the memory or latency verdicts (half a minute on a shared machine decides neither)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness.processes import PROJECT_DIR

pytestmark = pytest.mark.integration

PROCESSES = {"api", "notifier", "worker-1", "worker-2"}


@pytest.fixture(scope="module")
def quick_soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("soak")
    finished = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "0.5", "--images", "6", "--sample", "2", "--out", str(out)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300, check=False,
    )
    # Exit status 1 is a verdict not met (memory or latency in half a minute); anything else is a crash.
    assert finished.returncode in (0, 1), finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads((out / "soak.json").read_text()), out


def test_soak_quick_loses_no_job_at_the_rate_it_chose(quick_soak) -> None:
    results, _ = quick_soak
    verdicts = results["verdicts"]
    assert results["capacity_img_s"] > 0
    assert results["rate_img_s"] == pytest.approx(0.7 * results["capacity_img_s"], rel=1e-2)
    assert results["jobs"] == round(results["rate_img_s"] * 30) > 0
    assert verdicts["lost"] == 0 and verdicts["rejected"] == 0
    assert verdicts["completed"] + verdicts["failed"] == results["jobs"]
    assert verdicts["pass"]["no_job_lost"] is True


def test_soak_quick_samples_memory_descriptors_and_the_broker(quick_soak) -> None:
    results, _ = quick_soak
    samples = results["samples"]
    assert len(samples) >= 5
    assert [s["at"] for s in samples] == sorted(s["at"] for s in samples)
    for sample in samples:
        assert set(sample["rss_mb"]) == set(sample["fds"]) == PROCESSES
        assert all(value > 10 for value in sample["rss_mb"].values())
        assert all(value > 3 for value in sample["fds"].values())
    # API, 2 workers, notifier and the soak's event listener each hold a connection on the vhost.
    assert min(results["verdicts"]["connections_seen"]) >= 4
    assert set(results["verdicts"]["rss_growth"]) == PROCESSES
    windows = results["latency_windows"]
    assert sum(w["jobs"] for w in windows) == results["verdicts"]["completed"]


def test_soak_quick_writes_the_report_and_a_chart(quick_soak) -> None:
    _, out = quick_soak
    report = (out / "report.md").read_text()
    assert report.startswith("# Soak") and "| no job lost | 0 lost" in report
    for check in ("resident memory", "p99 latency", "file descriptors", "RabbitMQ connections"):
        assert check in report
    with Image.open(out / "soak.png") as chart:
        assert chart.format == "PNG" and chart.width > 600 and chart.height > 400
