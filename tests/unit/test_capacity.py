"""tools/capacity.py: the arithmetic from measured costs to machines, on made-up figures."""

import json
import math
from pathlib import Path

import pytest

from tools import capacity
from tools.capacity import Assumptions, JobCost, interpolate, load_costs, plan


def cost(
    mp: float,
    workers_ms: float,
    api_ms: float = 10,
    broker_ms: float = 5,
    store_ms: float = 20,
    original: float = 3e6,
    result: float = 1e5,
) -> JobCost:
    return JobCost(
        mp,
        {
            "workers": workers_ms / 1000,
            "api": api_ms / 1000,
            "notifier": 0.001,
            "broker": broker_ms / 1000,
            "objectstore": store_ms / 1000,
        },
        original,
        result,
    )


def test_interpolate_between_measured_sizes_is_linear() -> None:
    mid = interpolate([cost(2, 20, original=1e6), cost(12, 120, original=3e6)], 7)
    assert mid.cpu_s["workers"] == pytest.approx(0.070)
    assert mid.original_bytes == pytest.approx(2e6)


def test_interpolate_extrapolates_from_the_nearest_two_and_never_below_zero() -> None:
    costs = [cost(2, 20), cost(12, 120), cost(24, 180)]
    assert interpolate(costs, 36).cpu_s["workers"] == pytest.approx(0.240)
    assert interpolate(costs, 0.5).cpu_s["workers"] == pytest.approx(0.005)
    assert interpolate([cost(2, 20, api_ms=1), cost(12, 120, api_ms=50)], 0.01).cpu_s["api"] == 0.0


def test_interpolate_one_size_scales_in_proportion() -> None:
    assert interpolate([cost(12, 120)], 6).cpu_s["workers"] == pytest.approx(0.060)


def test_interpolate_refuses_a_non_positive_size() -> None:
    with pytest.raises(ValueError, match="megapixels must be positive"):
        interpolate([cost(12, 120)], 0)


def test_plan_rounds_machines_up_at_the_utilisation_target() -> None:
    result = plan(1000, cost(12, 70, api_ms=14, broker_ms=6, store_ms=35), Assumptions(core_utilisation=0.7))
    assert result.worker_cores == math.ceil(1000 * 0.070 / 0.7) == 100
    assert result.api_replicas == math.ceil(1000 * 0.014 / 0.7) == 20
    assert result.broker_cores == pytest.approx(6.0)
    assert result.broker_clusters == 1  # 3 nodes x 8 cores x 0.7 = 16.8 cores
    assert result.messages_per_s == 2000
    assert result.storage_cores == pytest.approx(35.0)
    assert result.storage_nodes_for_cpu == math.ceil(35 / (16 * 0.7)) == 4


def test_plan_storage_bandwidth_counts_replicas_and_reads() -> None:
    result = plan(100, cost(12, 70, original=3e6, result=1e5), Assumptions(storage_replicas=2))
    written = 3e6 + 1e5 + capacity.RECORD_WRITES * capacity.RECORD_BYTES
    read = 3e6 + capacity.RECORD_BYTES + 1e5
    assert result.storage_write_mb_s == pytest.approx(100 * written * 2 / 1e6)
    assert result.storage_read_mb_s == pytest.approx(100 * read / 1e6)
    assert result.ingress_mb_s == pytest.approx(300)


def test_plan_keeps_the_minimums_at_a_low_rate() -> None:
    result = plan(1, cost(12, 70))
    assert (result.api_replicas, result.notifier_replicas, result.broker_clusters, result.storage_nodes) == (
        2,
        1,
        1,
        3,
    )


def test_plan_bottleneck_is_the_shared_part_furthest_past_its_smallest_deployment() -> None:
    broker_bound = plan(1000, cost(12, 70, api_ms=1, broker_ms=50, store_ms=1, original=1e5, result=1e4))
    assert broker_bound.bottleneck == "broker CPU"
    assert broker_bound.pressure["broker CPU"] == pytest.approx(1000 * 0.050 / 16.8)
    assert broker_bound.ceilings["broker cluster (CPU)"] == pytest.approx(16.8 / 0.050)
    network_bound = plan(1000, cost(12, 70, api_ms=1, broker_ms=0.1, store_ms=1, original=50e6))
    assert network_bound.bottleneck == "storage network"
    cpu_bound = plan(1000, cost(12, 70, api_ms=400, broker_ms=0.1, store_ms=100, original=1e5, result=1e4))
    assert cpu_bound.bottleneck == "storage CPU"  # the API scales with replicas: never the shared limit
    assert cpu_bound.pressure["storage CPU"] == pytest.approx(1000 * 0.100 / (16 * 0.7 * 3))


def test_plan_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        plan(0, cost(12, 70))


def _measured(tmp_path: Path) -> Path:
    def run(mp: float, workers: float, ops: str) -> dict:
        return {
            "megapixels": mp,
            "operations": ops,
            "original_bytes": mp * 2.5e5,
            "result_bytes": 8e4,
            "cpu_ms_per_job": {
                "workers": 999,
                "api": 999,
                "notifier": 999,
                "broker": 999,
                "objectstore": 999,
            },
            "cpu_ms_per_job_net": {
                "workers": workers,
                "api": 10,
                "notifier": 1,
                "broker": 5,
                "objectstore": 20,
            },
        }

    path = tmp_path / "measured.json"
    path.write_text(
        json.dumps(
            {
                "runs": {
                    "2mp-default": run(2, 20, "resize,watermark"),
                    "12mp-default": run(12, 70, "resize,watermark"),
                    "12mp-sharpen": run(12, 140, "resize,filter(name=sharpen),watermark"),
                }
            }
        )
    )
    return path


def test_load_costs_reads_the_net_figures_by_size(tmp_path: Path) -> None:
    costs = load_costs(_measured(tmp_path), "default")
    assert [(c.megapixels, c.cpu_s["workers"]) for c in costs] == [(2, 0.020), (12, 0.070)]


def test_load_costs_scales_another_profile_by_its_measured_ratio(tmp_path: Path) -> None:
    costs = load_costs(_measured(tmp_path), "sharpen")
    assert [c.cpu_s["workers"] for c in costs] == pytest.approx([0.040, 0.140])
    assert [c.cpu_s["api"] for c in costs] == pytest.approx([0.010, 0.010])


def test_load_costs_refuses_an_unmeasured_profile(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no runs with operations 'blur'"):
        load_costs(_measured(tmp_path), "blur")


def test_cli_prints_one_column_per_rate(tmp_path: Path, capsys) -> None:
    assert (
        capacity.main(
            ["--data", str(_measured(tmp_path)), "--rate", "100", "1000", "--mp", "12", "--markdown"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| worker cores (1 worker pod per core) | 10 | 100 |" in out
    assert "| API replicas (1 core each) | 2 | 15 |" in out
    assert "12 MP photos, operations: default" in out


@pytest.mark.parametrize(
    "args", [["--rate", "0"], ["--rate", "10", "--mp", "-1"], ["--rate", "10", "--core-utilisation", "0"]]
)
def test_cli_refuses_impossible_inputs(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        capacity.main(["--data", str(_measured(tmp_path)), *args])
    assert exit_.value.code == 2


def test_plan_does_not_round_a_float_error_up_to_another_machine() -> None:
    assert plan(100, cost(12, 70)).worker_cores == 10  # 100 * 0.070 / 0.7 is 10.000000000000002


def test_docs_scaling_table_is_what_the_tool_prints_from_the_measured_figures(capsys) -> None:
    """docs/scaling.md's table must be regenerated when docs/capacity/measured.json changes."""
    assert capacity.main(["--rate", "100", "1000", "10000", "--mp", "12", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    docs = (Path(capacity.__file__).resolve().parents[1] / "docs" / "scaling.md").read_text()
    assert len(rows) == 2 + len(capacity.ROWS)
    assert [row for row in rows if row not in docs] == []
