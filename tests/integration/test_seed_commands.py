"""The seed's commands as the handout writes them, run with a `python` that has none of the
project's packages: each finds the project's virtualenv by itself (or says in one line what to run)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.broker import BrokerVhost
from harness.native_stack import NativeStack, start_native_stack
from harness.processes import PROJECT_DIR, wait_for
from harness.system import System
from load_test import analyze_results
from tools import project_python

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose `python` is the interpreter the virtualenv was made from, without its packages."""
    bin_dir = tmp_path_factory.mktemp("bare-bin")
    interpreter = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (bin_dir / "python").symlink_to(interpreter)
    probe = subprocess.run([bin_dir / "python", "-c", "import rich"], check=False, capture_output=True, text=True)
    assert probe.returncode != 0, f"{interpreter} has the project's packages; the test needs one without"
    return bin_dir


def seed_env(bare_python: Path, system: System | None = None) -> dict[str, str]:
    env = {k: v for k, v in (system.env if system else os.environ).items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.pop(project_python.RESTARTED, None)
    env["PATH"] = f"{bare_python}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def run_verbatim(command: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], check=False, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


def watch_verbatim(command: str, env: dict[str, str], expected: str, log: Path) -> str:
    """Starts a live view, waits for `expected` in its output, stops it with Ctrl-C."""
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: expected in log.read_text() or process.poll() is not None, 60, f"{expected!r} from {command}")
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    return log.read_text()


def test_queue_monitor_as_written(system: System, bare_python: Path, tmp_path: Path) -> None:
    output = watch_verbatim(
        "python monitoring/queue_monitor.py", seed_env(bare_python, system), "images.jobs.work", tmp_path / "q.log"
    )
    assert "ModuleNotFoundError" not in output and "Traceback" not in output
    assert "images.jobs.dead" in output and system.vhost.name in output


def test_performance_monitor_as_written(system: System, bare_python: Path, tmp_path: Path) -> None:
    output = watch_verbatim(
        "python monitoring/performance_monitor.py", seed_env(bare_python, system), "throughput", tmp_path / "p.log"
    )
    assert "ModuleNotFoundError" not in output and "Traceback" not in output
    assert "latency" in output


@pytest.fixture(scope="module")
def native_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """`make run` with one worker, in a private run directory: what `--workers 3` scales."""
    vhost = BrokerVhost().create()
    try:
        stack = start_native_stack(vhost, tmp_path_factory.mktemp("run"), workers=1)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        vhost.delete()


def load_env(bare_python: Path, stack: NativeStack, results: Path) -> dict[str, str]:
    """The stack's environment (its API, vhost and run directory), results written to `results`."""
    env = {k: v for k, v in stack.env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.pop(project_python.RESTARTED, None)
    env["PATH"] = f"{bare_python}:{env.get('PATH', '/usr/bin:/bin')}"
    env["RESULTS_DIR"] = str(results)
    return env


def single_summary(folder: Path) -> dict:
    summaries = list(folder.glob("*/summary.json"))
    assert len(summaries) == 1, summaries
    return json.loads(summaries[0].read_text())


def test_bulk_upload_as_written_scales_to_three_workers_and_completes_every_job(
    native_stack: NativeStack, bare_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    results = tmp_path_factory.getbasetemp() / "seed-results"
    command = "python load_test/bulk_upload.py --count 100 --workers 3"
    result = run_verbatim(command, load_env(bare_python, native_stack, results), timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output + native_stack.logs()
    assert "Traceback" not in output and "ModuleNotFoundError" not in output
    assert "scaling to 3 workers (tools/stack.sh)" in output
    assert "100 jobs, 3 workers: 100 completed, 0 failed, 0 lost" in output, output
    assert native_stack.vhost.consumer_count("images.jobs.work") == 3
    assert "worker-2" in native_stack.stack("ps").stdout
    summary = single_summary(results / "bulk_upload")
    assert (summary["count"], summary["completed"], summary["lost"]) == (100, 100, 0)
    assert (summary["workers"], summary["workers_source"]) == (3, "scaled")
    assert sorted(summary["per_worker"]) == ["worker-0", "worker-1", "worker-2"]
    # The console's Storage page lists them, and links SeaweedFS's filer browser.
    storage = httpx.get(f"{native_stack.api_url}/storage", params={"limit": 100}, timeout=30).json()
    assert len(storage["jobs"]) == 100 and storage["next_cursor"] is None
    assert storage["console_url"] == f"http://localhost:{int(native_stack.env['S3_PORT']) + 1002}/buckets/"


def test_burst_test_as_written_runs_its_bursts_and_completes_every_job(
    native_stack: NativeStack, bare_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    results = tmp_path_factory.getbasetemp() / "seed-results"
    command = "python load_test/burst_test.py --burst-size 50 --interval 5"
    result = run_verbatim(command, load_env(bare_python, native_stack, results), timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output + native_stack.logs()
    assert "Traceback" not in output and "ModuleNotFoundError" not in output
    for burst in range(3):
        assert f"burst {burst}: 50 jobs uploaded in " in output, output
    summary = single_summary(results / "burst_test")
    assert (summary["count"], summary["completed"], summary["lost"]) == (150, 150, 0)
    assert [(b["count"], b["completed"]) for b in summary["bursts"]] == [(50, 50)] * 3
    assert summary["settings"]["burst_size"] == 50 and summary["settings"]["interval_s"] == 5
    # 150 uploads in 10 s from one client pass RATE_LIMIT_UPLOADS (120/minute): the tool waits, and says so.
    throttled = summary["throttled"]["uploads"]
    assert (f"{throttled} uploads waited for the API's upload rate limit" in output) == (throttled > 0), output


def test_analyze_results_as_written_names_what_it_analyses(bare_python: Path) -> None:
    result = run_verbatim("python load_test/analyze_results.py", seed_env(bare_python), timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 0:
        assert "analysing the latest series, results/" in result.stdout
    else:
        assert "no load-test results in results yet" in result.stderr


def test_without_a_virtualenv_a_script_says_in_one_line_what_to_run(bare_python: Path, tmp_path: Path) -> None:
    """A checkout without .venv: the script's own copy of the project, but no virtualenv beside it."""
    checkout = tmp_path / "checkout"
    parts = ("tools/__init__.py", "tools/project_python.py", "monitoring/__init__.py", "monitoring/queue_monitor.py")
    for part in parts:
        (checkout / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_DIR / part, checkout / part)
    result = subprocess.run(
        ["python", "monitoring/queue_monitor.py"], check=False, cwd=checkout, env=seed_env(bare_python),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "lacks" in lines[0] and "make venv" in lines[0], result.stderr


def _run(folder: Path, started: float, workers: int) -> None:
    folder.mkdir(parents=True)
    summary = {"tool": "bulk_upload", "workers": workers, "count": 1, "completed": 1, "failed": 0, "lost": 0,
               "started_at": "2026-11-29T00:00:00+00:00", "duration_s": 1.0, "throughput_per_s": 1.0}
    (folder / "summary.json").write_text(json.dumps(summary))
    os.utime(folder / "summary.json", (started, started))


def test_analyze_results_without_arguments_picks_the_series_with_the_newest_run(tmp_path: Path, capsys) -> None:
    now = time.time()
    _run(tmp_path / "scaling" / "w1", now - 300, 1)
    _run(tmp_path / "bulk_upload" / "a-w2", now - 600, 2)
    _run(tmp_path / "bulk_upload" / "b-w3", now - 60, 3)
    assert analyze_results.latest_series(tmp_path) == tmp_path / "bulk_upload"
    assert analyze_results.latest_series(tmp_path / "nothing") is None
    assert analyze_results.main([], results=tmp_path / "nothing") == 1
    assert "no load-test results" in capsys.readouterr().err
