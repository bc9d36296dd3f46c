"""`python -m bench.capacity --quick` end to end: the measurement that docs/scaling.md and
tools/capacity.py stand on still runs, and what it writes is what the calculator reads."""

import json
import subprocess
import sys

import pytest

from harness.processes import PROJECT_DIR
from tools.capacity import GROUPS, interpolate, load_costs, plan

# Clusters start and lose a member here: more than the default per-test timeout on 2 busy cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_capacity_measure_quick_writes_figures_the_calculator_reads(tmp_path) -> None:
    out = tmp_path / "measured.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.capacity", "--quick", "--out", str(out)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(out.read_text())
    (run,) = document["runs"].values()
    assert run["jobs"] == 4 and run["result_bytes"] > 0 and run["original_bytes"] > 0
    assert set(GROUPS) <= set(run["cpu_ms_per_job"]) and set(GROUPS) <= set(run["cpu_ms_per_job_net"])
    assert all(run["cpu_ms_per_job"][g] > 0 for g in ("api", "workers", "objectstore", "broker"))
    assert all(run["cpu_ms_per_job_net"][g] <= run["cpu_ms_per_job"][g] for g in GROUPS)
    assert all(mb > 20 for mb in run["peak_rss_mb"].values())
    cost = interpolate(load_costs(out, "default"), run["megapixels"])
    assert plan(10, cost).worker_cores >= 1
