"""Ratios in bench.json keep three significant figures, so a small one is still within 1 % of the
figures it comes from (tests/integration/test_bench.py checks that on a real run)."""

import pytest

from bench.report import latency_table, machine_line, ratio


@pytest.mark.parametrize(("numerator", "denominator"), [(0.0588, 3.0), (1.0, 3.0), (1234.5, 1.0), (3.0, 0.0029)])
def test_a_ratio_stays_within_a_percent_of_its_figures(numerator: float, denominator: float) -> None:
    assert ratio(numerator, denominator) == pytest.approx(numerator / denominator, rel=5e-3)


def test_a_ratio_of_a_missing_figure_is_none() -> None:
    assert ratio(None, 2.0) is None and ratio(2.0, 0.0) is None


def test_the_machine_line_names_the_cpu_its_vector_sets_and_the_load() -> None:
    machine = {
        "cpus": 2, "cpu": "Intel(R) Xeon(R) Processor", "cpu_id": "family 6 model 167 stepping 1",
        "simd": ["avx2", "avx512f"], "memory_gb": 23.5, "loadavg_before": [0.73, 0.49, 0.21],
    }

    assert machine_line(machine) == (
        "Machine: 2 CPUs, Intel(R) Xeon(R) Processor (family 6 model 167 stepping 1; avx2, avx512f), 23.5 GB; "
        "load average 0.73 before the run."
    )


def test_the_machine_line_of_an_older_bench_json_keeps_to_what_it_has() -> None:
    assert machine_line({"cpus": 2, "cpu": "Intel(R) Xeon(R) Processor", "memory_gb": 23.5}) == (
        "Machine: 2 CPUs, Intel(R) Xeon(R) Processor, 23.5 GB."
    )


def _run(phases: dict | None) -> dict:
    return {"extra": {} if phases is None else {"one_at_a_time_p50_ms": phases}}


def test_the_latency_table_splits_the_p50_of_the_most_workers_by_phase() -> None:
    phases = {"latency": 88.9, "upload": 24.0, "queue_wait": 3.1, "processing": 45.3, "detection_lag": 2.5}
    results = {"details": {"system": {
        "1": {"2": _run({**phases, "latency": 108.9})},
        "2": {"0.3": _run(None), "2": _run(phases)},
    }}}

    table = latency_table(results).splitlines()

    assert table[0].startswith("| one job at a time, 2 workers: p50 ms |")
    assert table[2:] == ["| 2 MP | 88.9 | 24.0 | 3.1 | 45.3 | 2.5 |"]


def test_results_without_the_split_have_no_latency_table() -> None:
    assert latency_table({"details": {"system": {"2": {"2": _run(None)}}}}) == ""
    assert latency_table({}) == ""
