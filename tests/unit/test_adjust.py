"""autocontrast, brightness, contrast, saturation, pixelate: pixel values, alpha kept, modes kept."""

import pytest
from PIL import Image, ImageStat

from common.operations import (
    Autocontrast,
    Brightness,
    Contrast,
    OperationsError,
    Pixelate,
    Saturation,
    parse_operations,
)
from tests.support.images import make_photo
from worker.processors import apply


def mean(image: Image.Image) -> float:
    return sum(ImageStat.Stat(image.convert("RGB")).mean) / 3


def spread(image: Image.Image) -> float:
    return sum(ImageStat.Stat(image.convert("RGB")).stddev) / 3


def saturation_of(image: Image.Image) -> float:
    return ImageStat.Stat(image.convert("RGB").convert("HSV").getchannel("S")).mean[0]


def test_autocontrast_stretches_a_dull_image_to_the_full_range() -> None:
    dull = make_photo((120, 90)).point(lambda value: 100 + value // 4)  # 100..163
    result = apply(dull, Autocontrast())
    assert result.getextrema() == ((0, 255),) * 3 and spread(result) > 3 * spread(dull)


@pytest.mark.parametrize(("factor", "brighter"), [(1.5, True), (0.5, False)])
def test_brightness_scales_the_values(factor: float, brighter: bool) -> None:
    photo = make_photo((120, 90))
    result = apply(photo, Brightness(factor=factor))
    assert (mean(result) > mean(photo) * 1.2) if brighter else (mean(result) < mean(photo) * 0.6)
    assert apply(photo, Brightness(factor=0)).getextrema() == ((0, 0), (0, 0), (0, 0))


def test_contrast_and_saturation_go_both_ways() -> None:
    photo = make_photo((120, 90))
    assert spread(apply(photo, Contrast(factor=2))) > spread(photo) > spread(apply(photo, Contrast(factor=0.5)))
    assert saturation_of(apply(photo, Saturation(factor=2))) > saturation_of(photo)
    assert saturation_of(apply(photo, Saturation(factor=0))) < 1


def test_pixelate_makes_blocks_of_one_colour() -> None:
    result = apply(make_photo((160, 120)), Pixelate(size=20))
    assert result.size == (160, 120)
    block = result.crop((20, 20, 40, 40))
    assert len(set(block.get_flattened_data())) == 1
    assert len(set(result.get_flattened_data())) > 20  # still an image: many blocks, many colours


@pytest.mark.parametrize(
    "operation",
    [Autocontrast(cutoff=2), Brightness(factor=1.3), Contrast(factor=1.3), Saturation(factor=1.3), Pixelate(size=10)],
)
@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_adjustments_keep_the_mode_and_the_alpha(operation, mode: str) -> None:
    photo = make_photo((100, 100), mode)
    result = apply(photo, operation)
    assert result.mode == mode and result.size == (100, 100)
    if mode in ("LA", "RGBA") and not isinstance(operation, Pixelate):
        assert result.getchannel("A").tobytes() == photo.getchannel("A").tobytes()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("brightness", "factor"),
        ("brightness(factor=-1)", "greater than or equal to 0"),
        ("contrast(factor=11)", "less than or equal to 10"),
        ("saturation(factor=lots)", "factor"),
        ("pixelate(size=1)", "greater than or equal to 2"),
        ("pixelate(size=100000)", "less than or equal to 512"),
        ("autocontrast(cutoff=50)", "less than 50"),
    ],
)
def test_bad_adjustment_parameters_are_refused_naming_them(spec: str, fragment: str) -> None:
    with pytest.raises(OperationsError, match=fragment):
        parse_operations(spec, 5)
