"""Ratios in bench.json keep three significant figures, so a small one is still within 1 % of the
figures it comes from (tests/integration/test_bench.py checks that on a real run)."""

import pytest

from bench.report import ratio


@pytest.mark.parametrize(("numerator", "denominator"), [(0.0588, 3.0), (1.0, 3.0), (1234.5, 1.0), (3.0, 0.0029)])
def test_a_ratio_stays_within_a_percent_of_its_figures(numerator: float, denominator: float) -> None:
    assert ratio(numerator, denominator) == pytest.approx(numerator / denominator, rel=5e-3)


def test_a_ratio_of_a_missing_figure_is_none() -> None:
    assert ratio(None, 2.0) is None and ratio(2.0, 0.0) is None
