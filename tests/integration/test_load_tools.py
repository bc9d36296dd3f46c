"""The load tools on the real system, in small: bulk_upload, burst_test, analyze_results, the
Locust scenario and the image generator. Each tool runs as its README command (a subprocess)."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from harness.broker import BrokerVhost
from harness.processes import PROJECT_DIR, start_api
from harness.system import System
from test_images.generate import generate

pytestmark = pytest.mark.integration

SUMMARY_FIELDS = (
    "count",
    "completed",
    "failed",
    "lost",
    "workers",
    "duration_s",
    "throughput_img_s",
    "latency_ms",
    "server_total_ms",
    "per_worker",
)
CHARTS = ("latency_distribution.png", "queue_depth.png", "bursts.png", "throughput_vs_workers.png")


@dataclass
class ToolRun:
    out: Path
    returncode: int
    output: str

    @property
    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text())

    @property
    def jobs(self) -> list[dict]:
        return [json.loads(line) for line in (self.out / "jobs.jsonl").read_text().splitlines()]


def run_tool(
    script: str, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"load_test/{script}", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_load(
    script: str, system: System, out: Path, *args: str, vhost: str | None = None, api_url: str | None = None
) -> ToolRun:
    result = run_tool(
        script,
        system.env,
        "--api-url",
        api_url or system.api_url,
        "--vhost",
        vhost or system.vhost.name,
        "--out",
        str(out),
        "--quiet",
        *args,
    )
    return ToolRun(out, result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(4, seed=3, profile="tiny", out_dir=tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def bulk_run(system: System, images: Path, results: Path) -> ToolRun:
    return run_load(
        "bulk_upload.py",
        system,
        results / "bulk",
        "--count",
        "6",
        "--images",
        str(images),
        "--operations",
        "resize(width=200)",
    )


@pytest.fixture(scope="module")
def burst_run(system: System, images: Path, results: Path) -> ToolRun:
    return run_load(
        "burst_test.py",
        system,
        results / "burst",
        "--burst-size",
        "3",
        "--interval",
        "1.5",
        "--bursts",
        "2",
        "--images",
        str(images),
        "--operations",
        "resize(width=200)",
    )


def assert_consistent(summary: dict) -> None:
    for name in SUMMARY_FIELDS:
        assert name in summary, name
    assert summary["completed"] + summary["failed"] == summary["count"]
    assert summary["lost"] == 0
    assert sum(summary["per_worker"].values()) == summary["completed"]
    assert summary["throughput_img_s"] > 0
    assert summary["duration_s"] > 0
    for name in ("latency_ms", "server_total_ms"):
        p = summary[name]
        assert 0 < p["p50"] <= p["p95"] <= p["p99"] <= p["max"], (name, p)


def test_bulk_upload_summary_is_consistent(bulk_run: ToolRun) -> None:
    assert bulk_run.returncode == 0, bulk_run.output
    summary = bulk_run.summary
    assert_consistent(summary)
    assert (summary["count"], summary["completed"], summary["failed"]) == (6, 6, 0)
    assert summary["workers"] == 2 and summary["workers_source"] == "consumers"
    assert set(summary["per_worker"]) <= {"worker-a", "worker-b"}
    jobs = bulk_run.jobs
    assert len(jobs) == 6 and len({job["job_id"] for job in jobs}) == 6
    for job in jobs:
        assert job["status"] == "completed" and job["worker"] in ("worker-a", "worker-b")
        assert job["submitted_at"] <= job["uploaded_at"] <= job["observed_at"]
        assert job["created_at"] <= job["started_at"] <= job["finished_at"]
        # The client's view includes the server's (same clock natively), plus upload and notice time.
        assert job["latency_ms"] >= job["server_total_ms"] - 5, job


def test_bulk_upload_counts_corrupted_image_as_failed_not_lost(
    system: System, images: Path, tmp_path: Path, corrupted_jpg: Path
) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a-corrupted.jpg").write_bytes(corrupted_jpg.read_bytes())
    first = sorted(images.glob("img-*"))[0]
    (mixed / first.name).write_bytes(first.read_bytes())

    run = run_load("bulk_upload.py", system, tmp_path / "out", "--count", "2", "--images", str(mixed))

    assert run.returncode == 0, run.output
    summary = run.summary
    assert_consistent(summary)
    assert (summary["completed"], summary["failed"], summary["lost"]) == (1, 1, 0)
    failed = [job for job in run.jobs if job["status"] == "failed"]
    assert [job["image"] for job in failed] == ["a-corrupted.jpg"]
    assert failed[0]["error"]


def test_burst_test_records_bursts_and_queue_depth(burst_run: ToolRun) -> None:
    assert burst_run.returncode == 0, burst_run.output
    summary = burst_run.summary
    assert_consistent(summary)
    assert summary["count"] == 6
    bursts = summary["bursts"]
    assert [b["burst"] for b in bursts] == [0, 1]
    assert all(b["count"] == 3 and b["completed"] == 3 and b["drain_s"] > 0 for b in bursts)
    assert bursts[1]["start_at"] - bursts[0]["start_at"] >= 1.4
    assert sorted({job["burst"] for job in burst_run.jobs}) == [0, 1]
    samples = [json.loads(line) for line in (burst_run.out / "queue_depth.jsonl").read_text().splitlines()]
    assert len(samples) >= 3
    assert all(s["consumers"] == 2 and s["ready"] >= 0 for s in samples)


def test_analyze_results_writes_charts_and_report(
    bulk_run: ToolRun, burst_run: ToolRun, results: Path
) -> None:
    assert bulk_run.returncode == 0 and burst_run.returncode == 0
    report_dir = results / "report"

    result = run_tool("analyze_results.py", {}, str(results), "--out", str(report_dir))

    assert result.returncode == 0, result.stderr
    assert "bulk" in result.stdout and "burst" in result.stdout
    report = (report_dir / "report.md").read_text()
    for chart in CHARTS:
        path = report_dir / chart
        assert path.stat().st_size > 5000, chart
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 600
        assert f"]({chart})" in report
    assert "| bulk | 2 | 6 | 6 | 0 | 0 |" in report


def test_analyze_results_compares_worker_counts(tmp_path: Path) -> None:
    # Runs with made-up, known figures: the scaling notes must state them.
    for workers, throughput in ((1, 2.0), (2, 3.0), (4, 3.2)):
        run = tmp_path / f"w{workers}"
        run.mkdir()
        latency = {
            "n": 10,
            "p50": 1000.0 / workers,
            "p95": 2000.0,
            "p99": 2500.0,
            "max": 2600.0,
            "mean": 1200.0,
        }
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "tool": "bulk_upload",
                    "label": f"w{workers}",
                    "count": 10,
                    "completed": 10,
                    "failed": 0,
                    "lost": 0,
                    "workers": workers,
                    "duration_s": 10 / throughput,
                    "throughput_img_s": throughput,
                    "latency_ms": latency,
                    "server_total_ms": latency,
                    "processing_ms": latency,
                    "per_worker": {f"worker-{i}": 10 // workers for i in range(workers)},
                    "machine": {"cpus": 2},
                }
            )
        )

    result = run_tool("analyze_results.py", {}, str(tmp_path))

    assert result.returncode == 0, result.stderr
    report = (tmp_path / "report.md").read_text()
    assert "1 → 2 workers: throughput ×1.50 (ideal ×2.00)" in report
    assert "4 workers: 40% of linear scaling from 1." in report
    assert (tmp_path / "throughput_vs_workers.png").stat().st_size > 5000
    assert (tmp_path / "latency_vs_workers.png").stat().st_size > 5000


def test_bulk_upload_reports_lost_job_and_exits_nonzero(system: System, images: Path, tmp_path: Path) -> None:
    # An API on its own vhost with no worker: the job is accepted and never ends.
    vhost = BrokerVhost().create()
    api = None
    try:
        api, api_url = start_api(
            {**system.env, "RABBITMQ_VHOST": vhost.name}, system.log_dir, "api-no-workers"
        )
        run = run_load(
            "bulk_upload.py",
            system,
            tmp_path / "out",
            "--count",
            "1",
            "--images",
            str(images),
            "--timeout",
            "2",
            vhost=vhost.name,
            api_url=api_url,
        )
    finally:
        if api is not None:
            api.stop()
        vhost.delete()

    assert run.returncode == 1, run.output
    summary = run.summary
    assert (summary["count"], summary["completed"], summary["failed"], summary["lost"]) == (1, 0, 0, 1)
    assert summary["workers"] == 0
    lost = summary["lost_jobs"][0]
    assert lost["job_id"] and "still queued" in lost["error"]
    assert lost["job_id"] in run.output


def test_locustfile_runs_headless_against_the_api(system: System, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("locust")),
            "-f",
            "load_test/locustfile.py",
            "--headless",
            "-u",
            "2",
            "-r",
            "2",
            "-t",
            "6s",
            "--host",
            system.api_url,
            "--csv",
            str(tmp_path / "run"),
            "--only-summary",
        ],
        cwd=PROJECT_DIR,
        env={**system.env, "LOCUST_POLL_INTERVAL": "0.2"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "run_stats.csv").read_text().splitlines()
    jobs = [row.split(",") for row in rows if row.startswith("JOB,completed,")]
    assert jobs and int(jobs[0][2]) >= 1, rows
    assert any(row.startswith("POST,/upload,") for row in rows)


def test_generate_images_is_deterministic_and_varied(tmp_path: Path) -> None:
    first = generate(12, seed=5, profile="tiny", out_dir=tmp_path / "a")
    second = generate(12, seed=5, profile="tiny", out_dir=tmp_path / "b")
    other = generate(12, seed=6, profile="tiny", out_dir=tmp_path / "c")

    manifest = json.loads((first / "manifest.json").read_text())["images"]
    assert manifest == json.loads((second / "manifest.json").read_text())["images"]
    assert [i["sha256"] for i in manifest] != [
        i["sha256"] for i in json.loads((other / "manifest.json").read_text())["images"]
    ]
    assert {i["format"] for i in manifest} == {"JPEG", "PNG", "WEBP"}
    assert any(i["alpha"] for i in manifest) and any(i["orientation"] for i in manifest)
    for item in manifest:
        with Image.open(first / item["name"]) as image:
            assert (image.format, image.size) == (item["format"], (item["width"], item["height"]))
            assert ("A" in image.getbands()) == item["alpha"]
            assert image.getexif().get(0x0112) == item["orientation"]
            # Photo-like, not flat: many distinct colours.
            assert len(image.convert("RGB").getcolors(1 << 20) or []) > 1000
