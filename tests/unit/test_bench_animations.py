"""bench.animations on tiny animations: both formats measured, real animated files."""

from io import BytesIO

from PIL import Image

from bench.animations import FORMATS, flat_animation, measure, photo_animation


def test_both_formats_are_measured_on_both_animations() -> None:
    for make in (photo_animation, flat_animation):
        source = make((80, 60), 4)
        assert Image.open(BytesIO(source)).n_frames == 4

        figures = measure(source, rounds=1)

        assert set(figures) == set(FORMATS)
        for figure in figures.values():
            assert figure["cpu_ms"] >= 0 and figure["bytes"] > 100
