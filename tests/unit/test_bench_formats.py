"""bench.formats on a tiny image: every contender measured, ratios to the pipeline's JPEG, real files."""

from io import BytesIO

from bench.formats import JOBS, measure
from tests.support.images import make_photo


def test_every_contender_is_measured_against_the_pipelines_jpeg() -> None:
    source = BytesIO()
    make_photo((160, 120)).save(source, "JPEG", quality=90)

    for job in JOBS:
        figures = measure(source.getvalue(), job, rounds=1)

        assert set(figures) == {"pipeline jpeg", "pipeline avif", "pipeline auto", "libvips jpeg", "libvips avif"}
        assert figures["pipeline jpeg"]["vs_pipeline_jpeg"] == 1.0
        for figure in figures.values():
            assert figure["ms"] > 0 and figure["bytes"] > 100
            # both are rounded (ms to 0.01, the ratio to 0.01): they agree within that rounding
            ratio = figure["ms"] / figures["pipeline jpeg"]["ms"]
            slack = 0.005 * (1 + ratio) / figures["pipeline jpeg"]["ms"] + 0.005
            assert abs(figure["vs_pipeline_jpeg"] - ratio) <= slack * 1.01
