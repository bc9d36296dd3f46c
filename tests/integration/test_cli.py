"""The command-line client against a running system: what it prints, writes and exits with."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness.processes import PROJECT_DIR, free_port
from harness.system import System

pytestmark = pytest.mark.integration


def imgpipe(system: System | None, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    """`python -m client ...` as a user runs it, pointed at the system by the environment."""
    env = {"PATH": "/usr/bin:/bin", "IMGPIPE_URL": url or (system.api_url if system else "")}
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        check=False, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=180,
    )


def test_upload_wait_out_follows_every_file_and_writes_the_results(system: System, sample_jpg, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = imgpipe(system, "upload", str(sample_jpg), "--ops", "resize(width=120)", "--wait", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "sample.jpg: completed 120x90 jpeg" in result.stdout
    written = out / "sample.jpg"
    assert f"written to {written}" in result.stdout
    assert Image.open(io.BytesIO(written.read_bytes())).size == (120, 90)


def test_a_failed_job_exits_1_and_says_why(system: System, sample_jpg, corrupted_jpg) -> None:
    result = imgpipe(system, "upload", str(sample_jpg), str(corrupted_jpg), "--ops", "resize(width=50)", "--wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sample.jpg: completed 50x38 jpeg" in result.stdout
    assert "corrupted.jpg: failed: truncated:" in result.stdout


def test_a_refused_upload_exits_1_naming_the_problem(system: System, sample_jpg) -> None:
    result = imgpipe(system, "upload", str(sample_jpg), "--ops", "melt")
    assert result.returncode == 1
    assert "sample.jpg: refused" in result.stderr and "operations" in result.stderr


def test_status_prints_the_record_and_dlq_stats_the_queue(system: System, sample_jpg) -> None:
    job_id = system.upload(sample_jpg, operations="resize(width=30)").json()["job_id"]
    status = imgpipe(system, "status", job_id, "--wait", "30")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["job_id"] == job_id
    stats = imgpipe(system, "dlq", "stats")
    assert stats.returncode == 0 and "count" in json.loads(stats.stdout)


@pytest.mark.parametrize(
    "args", [("status", "0123456789abcdef0123456789abcdef"), ("upload", "/no/such/file.jpg"), ("frobnicate",)]
)
def test_usage_and_unknown_jobs_exit_2(system: System, args: tuple[str, ...]) -> None:
    result = imgpipe(system, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip()


def test_an_unreachable_api_exits_2_in_one_line() -> None:
    result = imgpipe(None, "status", "0" * 32, url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("imgpipe: cannot reach the API at http://127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_watch_prints_every_jobs_changes(system: System, sample_jpg) -> None:
    env = {"PATH": "/usr/bin:/bin", "IMGPIPE_URL": system.api_url, "PYTHONUNBUFFERED": "1"}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "client", "watch"], cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert watcher.stdout.readline().startswith("following every job's changes at")
        job_id = system.upload(sample_jpg, operations="resize(width=40)").json()["job_id"]
        for line in watcher.stdout:
            if job_id in line and "completed 40x30" in line:
                break
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_upload_with_variants_writes_one_file_per_variant(system: System, sample_jpg, tmp_path: Path) -> None:
    out = tmp_path / "out"
    variants = {"thumb": {"operations": "resize(width=100)", "output_format": "webp"}, "big": {"operations": "flip"}}
    result = imgpipe(
        system, "upload", str(sample_jpg), "--variants", json.dumps(variants), "--wait", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "sample.jpg: completed thumb 100x75 webp" in result.stdout and "big 1600x1200 jpeg" in result.stdout
    thumb, big = out / "sample" / "thumb.webp", out / "sample" / "big.jpg"
    assert f"thumb written to {thumb}" in result.stdout
    assert sorted(path.name for path in (out / "sample").iterdir()) == ["big.jpg", "thumb.webp"]
    assert Image.open(thumb).size == (100, 75) and Image.open(big).size == (1600, 1200)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--preset", "nope"), "no preset 'nope'"),
        (("--variants", '{"../x": {"operations": "flip"}}'), "variant name '../x' is not allowed"),
        (("--variants", "[1]"), "must be a JSON object"),
    ],
)
def test_upload_with_bad_variants_or_preset_exits_1_naming_the_problem(
    system: System, sample_jpg, args: tuple[str, ...], fragment: str
) -> None:
    result = imgpipe(system, "upload", str(sample_jpg), *args)
    assert result.returncode == 1
    assert fragment in result.stderr and "422" in result.stderr


def test_variants_and_preset_together_are_a_usage_error(system: System, sample_jpg) -> None:
    result = imgpipe(system, "upload", str(sample_jpg), "--preset", "avatar", "--variants", "{}")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr
