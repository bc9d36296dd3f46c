import pytest
from PIL import Image, ImageChops, ImageStat

from common.operations import OPERATION_MODELS, Filter, Resize, Watermark
from tests.support.images import make_photo, mean_difference
from worker.processors import PROCESSORS, apply
from worker.processors import watermark as watermark_module
from worker.processors.registry import processor
from worker.processors.resize import REDUCING_GAP, RESAMPLE


def changed_box(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int] | None:
    difference = ImageChops.difference(before.convert("RGBA"), after.convert("RGBA"))
    return difference.getbbox(alpha_only=False)


def variance(image: Image.Image) -> float:
    return ImageStat.Stat(image.convert("L")).var[0]


# registry


def test_registry_covers_every_declared_operation():
    assert set(PROCESSORS) == set(OPERATION_MODELS)


def test_registry_rejects_undeclared_operation():
    with pytest.raises(ValueError, match="shear"):
        processor("shear")


def test_registry_rejects_second_processor_for_a_name():
    with pytest.raises(ValueError, match="already registered"):
        processor("resize")(lambda image, operation: image)


def test_apply_dispatches_on_operation_name():
    assert apply(make_photo(), Resize(width=100)).size == (100, 75)
    assert apply(make_photo(), Filter(type="grayscale")).mode == "L"


# resize: the photo is 640×480


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (Resize(width=320, height=320), (320, 240)),
        (Resize(width=160), (160, 120)),
        (Resize(height=120), (160, 120)),
        (Resize(width=1000, height=1000), (640, 480)),
        (Resize(width=1000, height=1000, upscale=True), (1000, 750)),
        (Resize(width=2000, upscale=True), (2000, 1500)),
        (Resize(), (640, 480)),
        (Resize(width=300, height=300, fit="cover"), (300, 300)),
        (Resize(width=800, height=300, fit="cover"), (640, 300)),
        (Resize(width=1000, height=1000, fit="cover"), (640, 480)),
        (Resize(width=1000, height=1000, fit="cover", upscale=True), (1000, 1000)),
        (Resize(width=300, height=100, fit="fill"), (300, 100)),
        (Resize(width=1000, height=100, fit="fill"), (640, 100)),
        (Resize(width=1000, height=100, fit="fill", upscale=True), (1000, 100)),
    ],
)
def test_resize_output_size(operation, expected):
    assert apply(make_photo(), operation).size == expected


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_resize_keeps_mode(mode):
    assert apply(make_photo(mode=mode), Resize(width=100, height=100, fit="cover")).mode == mode


def test_resize_cover_crops_around_centre():
    source = make_photo()
    source.paste((255, 0, 0), (300, 220, 340, 260))  # a red square in the middle
    source.paste((0, 0, 255), (0, 0, 60, 480))  # a blue band on the left, cropped away
    result = apply(source, Resize(width=300, height=300, fit="cover"))
    red, green, blue = result.getpixel((150, 150))
    assert red > 200 and green < 60 and blue < 60
    assert result.getpixel((2, 150))[2] < 200


def test_resize_cover_without_scaling_is_a_plain_crop():
    source = make_photo()
    result = apply(source, Resize(width=800, height=300, fit="cover"))
    assert result.tobytes() == source.crop((0, 90, 640, 390)).tobytes()


def test_resize_matches_full_lanczos():
    source = make_photo((1600, 1200))
    fast = apply(source, Resize(width=200))
    fair = source.resize((200, 150), RESAMPLE)
    assert fast.size == fair.size
    assert mean_difference(fast, fair) < 1.0
    assert REDUCING_GAP >= 3.0


def test_resize_leaves_input_unchanged():
    source = make_photo()
    before = source.tobytes()
    apply(source, Resize(width=100, height=100, fit="fill"))
    assert source.tobytes() == before and source.size == (640, 480)


# watermark: the photo is 400×300


@pytest.mark.parametrize(
    ("position", "quadrant"),
    [
        ("top-left", (0, 0, 200, 150)),
        ("top-right", (200, 0, 400, 150)),
        ("bottom-left", (0, 150, 200, 300)),
        ("bottom-right", (200, 150, 400, 300)),
    ],
)
def test_watermark_corner_stays_in_its_quadrant(position, quadrant):
    source = make_photo((400, 300))
    result = apply(source, Watermark(text="ab", position=position, size=0.1))
    left, top, right, bottom = changed_box(source, result)
    q_left, q_top, q_right, q_bottom = quadrant
    assert q_left <= left and right <= q_right and q_top <= top and bottom <= q_bottom
    # The margin is 2 % of the shorter side: 6 px from the edges.
    assert min(left, top, 400 - right, 300 - bottom) >= 5


def test_watermark_center_is_centred():
    source = make_photo((400, 300))
    left, top, right, bottom = changed_box(
        source, apply(source, Watermark(text="centre", position="center", size=0.1))
    )
    assert abs((left + right) / 2 - 200) <= 3 and abs((top + bottom) / 2 - 150) <= 3


def test_watermark_text_height_follows_size():
    source = make_photo((400, 300))
    small = changed_box(source, apply(source, Watermark(text="Hd", size=0.05)))
    large = changed_box(source, apply(source, Watermark(text="Hd", size=0.2)))
    small_height, large_height = small[3] - small[1], large[3] - large[1]
    assert 0.6 * 15 <= small_height <= 1.4 * 15  # 5 % of 300 px
    assert 0.6 * 60 <= large_height <= 1.4 * 60
    assert large_height > 3 * small_height


def test_watermark_long_text_shrinks_to_fit():
    source = make_photo((400, 300))
    result = apply(source, Watermark(text="x" * 40, position="top-left", size=0.2))
    left, top, right, bottom = changed_box(source, result)
    assert left >= 5 and 350 <= right <= 395
    assert bottom - top < 30  # shrunk from 60 px


def test_watermark_tile_covers_whole_image():
    source = make_photo((600, 400))
    result = apply(source, Watermark(text="imgpipe", position="tile", size=0.05))
    difference = ImageChops.difference(source, result).convert("L")
    for column in range(3):
        for row in range(3):
            cell = (column * 200, row * 133, (column + 1) * 200, (row + 1) * 133)
            assert difference.crop(cell).getbbox() is not None, cell
    changed = sum(1 for value in difference.get_flattened_data() if value)
    assert 0.05 < changed / (600 * 400) < 0.6


def test_watermark_opacity_sets_strength():
    source = make_photo((400, 300))
    strong = apply(source, Watermark(position="center", size=0.2, opacity=1.0))
    faint = apply(source, Watermark(position="center", size=0.2, opacity=0.2))
    assert mean_difference(source, strong) > 3 * mean_difference(source, faint) > 0


@pytest.mark.parametrize("background", ["white", "black"])
def test_watermark_legible_on_light_and_dark(background):
    source = Image.new("RGB", (400, 300), background)
    result = apply(source, Watermark(text="HELLO", position="center", size=0.2, opacity=1.0))
    text = result.crop(changed_box(source, result)).convert("L")
    darkest, lightest = text.getextrema()
    assert darkest < 40 and lightest > 215


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_watermark_keeps_mode(mode):
    source = make_photo((400, 300), mode)
    result = apply(source, Watermark(position="bottom-right", size=0.1))
    assert result.mode == mode and result.size == source.size
    assert changed_box(source, result) is not None


def test_watermark_shows_on_transparent_pixels():
    source = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    result = apply(source, Watermark(position="center", size=0.2, opacity=1.0))
    _, _, _, alpha = result.split()
    assert alpha.getextrema() == (0, 255)
    assert result.getpixel((5, 5)) == (0, 0, 0, 0)


def test_watermark_leaves_input_unchanged():
    source = make_photo((400, 300))
    before = source.tobytes()
    apply(source, Watermark(position="tile"))
    assert source.tobytes() == before


def test_watermark_falls_back_to_builtin_font(monkeypatch):
    monkeypatch.setattr(watermark_module, "FONT_PATH", watermark_module.FONT_PATH / "missing")
    watermark_module._font_path.cache_clear()
    watermark_module._font.cache_clear()
    try:
        source = make_photo((400, 300))
        _left, top, _right, bottom = changed_box(
            source, apply(source, Watermark(text="Hd", position="center", size=0.2))
        )
        assert 0.6 * 60 <= bottom - top <= 1.4 * 60
    finally:
        watermark_module._font_path.cache_clear()
        watermark_module._font.cache_clear()


# filter


@pytest.mark.parametrize(("mode", "expected"), [("RGB", "L"), ("RGBA", "LA"), ("L", "L")])
def test_filter_grayscale_mode(mode, expected):
    assert apply(make_photo(mode=mode), Filter(type="grayscale")).mode == expected


def test_filter_invert_known_pixel():
    source = Image.new("RGBA", (4, 4), (10, 200, 30, 77))
    assert apply(source, Filter(type="invert")).getpixel((1, 1)) == (245, 55, 225, 77)


def test_filter_sepia_warm_tint_on_grey():
    result = apply(Image.new("RGB", (4, 4), (128, 128, 128)), Filter(type="sepia"))
    red, green, blue = result.getpixel((1, 1))
    assert red > green > blue and red - blue > 30


def test_filter_sepia_colours_greyscale_input():
    result = apply(make_photo(mode="LA"), Filter(type="sepia"))
    assert result.mode == "RGBA"


def test_filter_blur_reduces_variance():
    source = make_photo()
    light = apply(source, Filter(type="blur", radius=1))
    heavy = apply(source, Filter(type="blur"))
    assert variance(source) > variance(light) > variance(heavy)


def test_filter_blur_does_not_bleed_hidden_colour():
    source = Image.new("RGBA", (40, 40), (255, 255, 255, 255))
    source.paste((255, 0, 0, 0), (20, 0, 40, 40))  # transparent, but red underneath
    red, green, blue, alpha = apply(source, Filter(type="blur", radius=3)).getpixel((19, 20))
    assert 0 < alpha < 255
    assert min(red, green, blue) >= 250


def test_filter_sharpen_increases_variance():
    source = apply(make_photo(), Filter(type="blur", radius=1))
    assert variance(apply(source, Filter(type="sharpen"))) > variance(source)


@pytest.mark.parametrize("name", ["edge_enhance", "contour", "emboss", "sharpen"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_filter_kernels_change_image_keep_size_mode_and_alpha(name, mode):
    source = make_photo((200, 150), mode)
    result = apply(source, Filter(type=name))
    assert result.size == source.size and result.mode == mode
    assert mean_difference(source.convert("RGB"), result.convert("RGB")) > 1
    if mode == "RGBA":
        assert result.getchannel("A").tobytes() == source.getchannel("A").tobytes()


def test_watermark_reuses_a_rendered_stamp_with_the_same_pixels():
    watermark_module._stamps.clear()
    source = make_photo((400, 300))
    first = apply(source, Watermark(text="cached"))
    assert len(watermark_module._stamps) == 1
    second = apply(source, Watermark(text="cached"))
    assert len(watermark_module._stamps) == 1
    assert first.tobytes() == second.tobytes()


def test_watermark_does_not_keep_large_stamps():
    watermark_module._stamps.clear()
    apply(make_photo((2000, 1500)), Watermark(text="BIG", size=0.5))  # a stamp of about 1500×750
    assert watermark_module._stamps == {}
    for index in range(watermark_module.STAMP_CACHE_SIZE + 5):
        apply(make_photo((60, 40)), Watermark(text=f"t{index}"))
    assert len(watermark_module._stamps) == watermark_module.STAMP_CACHE_SIZE


def test_watermark_stamp_never_exceeds_the_image_whatever_the_text() -> None:
    """A tower of combining marks (which validation refuses, but a message need not have been
    validated by this code) renders no larger than the image it goes on."""
    tower = Watermark.model_construct(
        name="watermark", text="a" + "\u0301" * 99, position="center", opacity=0.5, size=0.5
    )
    image = Image.new("RGB", (1000, 1000), "white")
    stamp = watermark_module._stamp(tower.text, 500, 980, 980, 0.5)
    assert stamp.width <= 980 and stamp.height <= 980
    assert apply(image, tower).size == (1000, 1000)
