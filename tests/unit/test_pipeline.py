import random
import threading
import time
from io import BytesIO

import pytest
from PIL import ExifTags, Image, ImageCms, JpegImagePlugin

from common.imaging import guard_decompression
from common.operations import Filter, Resize, Watermark, parse_operations
from common.variants import Variant
from tests.support.images import make_photo, mean_difference, png_declaring
from worker import pipeline
from worker.pipeline import ImageRejected, ProcessedImage, process_image, process_variants
from worker.processors import apply

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
RED = (255, 0, 0)


def encode(image: Image.Image, format_: str, **options) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format_, **options)
    return buffer.getvalue()


def run(data: bytes, operations=(), output_format=None, quality=85, max_pixels=50_000_000):
    guard_decompression(max_pixels)  # as the worker's image process does
    return process_image(data, list(operations), output_format, quality, max_pixels)


def decode(result: ProcessedImage) -> Image.Image:
    image = Image.open(BytesIO(result.data))
    image.load()
    return image


def rotated_jpeg(image: Image.Image) -> bytes:
    """A JPEG stored as `image` with orientation 6 (turn 90° clockwise to view), red top-left."""
    width, height = image.size
    image.paste(RED, (0, 0, width // 6, height // 6))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return encode(image, "JPEG", quality=95, exif=exif)


def is_red(pixel) -> bool:
    red, green, blue = pixel[:3]
    return red > 200 and green < 70 and blue < 70


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    return encode(make_photo((2401, 1799)), "JPEG", quality=90)


# formats


@pytest.mark.parametrize(
    ("format_", "mode", "expected"),
    [
        ("JPEG", "RGB", "jpeg"),
        ("PNG", "RGB", "png"),
        ("WEBP", "RGB", "webp"),
        ("GIF", "P", "gif"),
        ("AVIF", "RGB", "avif"),
        ("HEIF", "RGB", "jpeg"),
        ("HEIF", "RGBA", "png"),
        ("BMP", "RGB", "jpeg"),
        ("TIFF", "RGB", "jpeg"),
        ("TIFF", "RGBA", "png"),
    ],
)
def test_output_format_defaults_to_input_or_by_alpha(format_, mode, expected):
    source = make_photo((120, 90), "RGBA" if mode == "RGBA" else "RGB")
    if mode == "P":
        source = source.quantize(64)
    result = run(encode(source, format_))
    assert result.format == expected
    assert result.content_type == f"image/{expected}"
    assert decode(result).format == expected.upper()
    assert (result.width, result.height) == (120, 90) == decode(result).size


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("webp", "WEBP"), ("jpg", "JPEG"), ("PNG", "PNG"), ("avif", "AVIF"), ("gif", "GIF"), ("auto", "AVIF")],
)
def test_output_format_requested(requested, expected):
    result = run(encode(make_photo((120, 90)), "PNG"), output_format=requested)
    assert decode(result).format == expected
    assert result.content_type == f"image/{expected.lower()}"


def test_output_format_unknown_raises():
    with pytest.raises(ValueError, match="bmp"):
        run(encode(make_photo((20, 20)), "PNG"), output_format="bmp")


@pytest.mark.parametrize("format_", ["jpeg", "webp"])
def test_quality_changes_size(format_):
    source = encode(make_photo((320, 240)), "PNG")
    low = run(source, output_format=format_, quality=30)
    high = run(source, output_format=format_, quality=90)
    assert len(low.data) < 0.7 * len(high.data)


def test_operations_apply_in_order():
    result = run(
        encode(make_photo(), "JPEG"),
        [Resize(width=200), Filter(type="grayscale"), Watermark(position="tile")],
    )
    image = decode(result)
    assert image.size == (200, 150) and image.mode == "L"


# orientation and metadata


def test_exif_orientation_applied():
    image = decode(run(rotated_jpeg(make_photo((300, 200))), output_format="png"))
    assert image.size == (200, 300)
    assert is_red(image.getpixel((190, 10)))  # stored top-left is now top-right
    assert not is_red(image.getpixel((10, 10)))


def test_exif_orientation_applied_with_draft():
    image = decode(run(rotated_jpeg(make_photo((1200, 800))), [Resize(width=100)], output_format="png"))
    assert image.size == (100, 150)
    assert is_red(image.getpixel((95, 5)))
    assert not is_red(image.getpixel((5, 5)))


def test_exif_stripped_from_output():
    result = decode(run(rotated_jpeg(make_photo((300, 200)))))
    assert "exif" not in result.info
    assert ExifTags.Base.Orientation not in result.getexif()


@pytest.mark.parametrize("format_", ["jpeg", "png", "webp"])
def test_icc_profile_preserved_with_color_keep(format_):
    source = encode(make_photo((120, 90)), "JPEG", icc_profile=SRGB)
    guard_decompression(50_000_000)
    result = process_image(source, [Resize(width=60)], format_, 85, 50_000_000, color="keep")
    assert decode(result).info.get("icc_profile") == SRGB


def test_icc_profile_dropped_when_colour_space_changes():
    source = encode(make_photo((120, 90)), "JPEG", icc_profile=SRGB)
    image = decode(run(source, [Filter(type="grayscale")]))
    assert image.mode == "L" and not image.info.get("icc_profile")


# modes


def test_alpha_png_to_jpeg_flattened_on_white():
    source = make_photo((100, 100), "RGBA")
    source.paste((255, 0, 0, 0), (0, 0, 50, 50))  # transparent, red underneath
    image = decode(run(encode(source, "PNG"), output_format="jpeg"))
    assert image.mode == "RGB"
    assert all(value > 245 for value in image.getpixel((10, 10)))


def test_la_png_to_jpeg_is_greyscale():
    image = decode(run(encode(make_photo((100, 100), "LA"), "PNG"), output_format="jpeg"))
    assert image.mode == "L"
    assert image.getpixel((50, 0)) > 245  # alpha is 0 along the top


def test_la_png_stays_la():
    assert decode(run(encode(make_photo((100, 100), "LA"), "PNG"))).mode == "LA"


def test_cmyk_jpeg_becomes_rgb():
    source = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red ink
    result = run(encode(source, "JPEG", quality=95))
    image = decode(result)
    assert result.format == "jpeg" and image.mode == "RGB"
    assert is_red(image.getpixel((32, 32)))


def test_palette_png_transparency_kept():
    source = Image.new("P", (60, 60), 0)
    source.putpalette([*RED, 0, 0, 255])
    source.paste(1, (30, 0, 60, 60))
    data = encode(source, "PNG", transparency=0)
    png = decode(run(data))
    assert png.mode == "RGBA"
    assert png.getpixel((10, 10))[3] == 0 and png.getpixel((50, 10)) == (0, 0, 255, 255)
    jpeg = decode(run(data, output_format="jpeg"))
    assert all(value > 245 for value in jpeg.getpixel((10, 10)))


def test_gif_first_frame_used():
    frames = [Image.new("RGB", (40, 40), colour) for colour in (RED, (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    image = decode(run(data, output_format="png"))
    assert image.mode == "RGB" and image.getpixel((20, 20)) == RED


def test_sixteen_bit_gradient_stays_gradient():
    source = Image.new("I;16", (256, 4))
    source.putdata([x * 257 for x in range(256)] * 4)
    image = decode(run(encode(source, "PNG")))
    assert image.mode == "L"
    row = [image.getpixel((x, 1)) for x in range(256)]
    assert row == sorted(row)
    assert row[0] <= 1 and row[-1] >= 254 and len(set(row)) > 200


def test_one_bit_png_becomes_greyscale():
    source = make_photo((64, 64), "L").convert("1")
    image = decode(run(encode(source, "PNG")))
    assert image.mode == "L" and image.getextrema() == (0, 255)


# JPEG draft


@pytest.mark.parametrize(
    "operation",
    [
        Resize(width=800),
        Resize(width=300, height=300),
        Resize(width=500, height=200, fit="cover"),
        Resize(width=333, height=517, fit="fill"),
    ],
)
def test_jpeg_draft_matches_full_decode(large_jpeg, operation):
    full = Image.open(BytesIO(large_jpeg))
    full.load()
    expected = apply(full, operation)
    result = decode(run(large_jpeg, [operation], output_format="png"))
    assert result.size == expected.size
    assert mean_difference(result, expected) < 3


@pytest.fixture
def drafts(monkeypatch) -> list:
    """What each JPEG draft request returned: (mode, box of the decoded image in source pixels)."""
    seen: list = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, request):
        seen.append(original(self, mode, request))
        return seen[-1]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return seen


def test_jpeg_draft_used_for_downscaling(large_jpeg, drafts):
    run(large_jpeg, [Resize(width=800)])
    run(large_jpeg, [Filter(type="invert"), Resize(width=800)])
    assert len(drafts) == 1  # only when the resize comes first
    _, (_, _, decoded_width, _) = drafts[0]
    assert decoded_width == 2401 / 2  # 800 px wide needs at least 1/2 scale, not 1/4


@pytest.mark.parametrize(
    ("size", "operation", "scale"),
    [
        ((2048, 1365), Resize(width=512, height=512), 4),  # 3:2, the photo most cameras take
        ((1365, 2048), Resize(width=512, height=512), 4),  # 3:2 portrait
        ((1920, 1080), Resize(width=480), 4),  # 16:9
        ((2401, 1799), Resize(width=300, height=300), 4),  # odd sizes: 8.0 on one side, 6.0 on the other
        ((4000, 3000), Resize(width=500), 8),
        ((4001, 2999), Resize(width=500), 4),  # 7.997 on the height: 1/8 would decode below the output
        ((1001, 667), Resize(width=333), 2),  # 3.006: 1/2, never below the output
    ],
)
def test_jpeg_draft_scale_whatever_the_aspect_ratio(size, operation, scale, drafts):
    source = encode(make_photo(size), "JPEG", quality=90)
    full = Image.open(BytesIO(source))
    full.load()
    result = decode(run(source, [operation], output_format="png"))
    _, (_, _, decoded_width, decoded_height) = drafts[0]
    assert (decoded_width, decoded_height) == (size[0] / scale, size[1] / scale)
    expected = apply(full, operation)
    assert result.size == expected.size
    assert mean_difference(result, expected) < 3


# rejections


def test_rejects_an_avif_whose_image_item_is_missing():
    # libavif's decoder raises RuntimeError, which Pillow passes on as it is.
    data = bytearray(encode(make_photo((64, 48)), "AVIF"))
    data[81] = 0
    with pytest.raises(ImageRejected) as caught:
        run(bytes(data))
    assert caught.value.reason == "undecodable"
    assert "Missing or empty image item" in str(caught.value)


def test_rejects_non_image():
    with pytest.raises(ImageRejected) as caught:
        run(b"this is not an image, it is text" * 10)
    assert caught.value.reason == "undecodable"
    assert "not a recognisable image" in str(caught.value)


def test_rejects_unsupported_format():
    with pytest.raises(ImageRejected) as caught:
        run(encode(make_photo((32, 32)), "PCX"))
    assert caught.value.reason == "unsupported_format"
    assert "PCX" in str(caught.value)


def test_rejects_truncated_jpeg():
    data = encode(make_photo((300, 200)), "JPEG")
    with pytest.raises(ImageRejected) as caught:
        run(data[: len(data) // 2])
    assert caught.value.reason == "truncated"
    assert "truncated" in str(caught.value)


def test_rejects_corrupt_jpeg_body():
    data = encode(make_photo((300, 200)), "JPEG")
    with pytest.raises(ImageRejected) as caught:
        run(data[:700] + random.Random(1).randbytes(len(data) - 700))
    assert caught.value.reason in ("undecodable", "truncated")
    assert "corrupt" in str(caught.value) or "truncated" in str(caught.value)


def test_rejects_truncated_png():
    data = encode(make_photo((300, 200)), "PNG")
    with pytest.raises(ImageRejected) as caught:
        run(data[: len(data) // 2])
    assert caught.value.reason == "truncated"


def test_rejects_too_many_pixels_before_decoding():
    with pytest.raises(ImageRejected) as caught:
        run(png_declaring(5000, 5000), max_pixels=1_000_000)
    assert caught.value.reason == "too_many_pixels"
    assert "5000×5000" in str(caught.value) and "1,000,000" in str(caught.value)


def test_rejects_decompression_bomb_naming_its_size():
    with pytest.raises(ImageRejected) as caught:
        run(png_declaring(100_000, 100_000))  # 10 GB if decoded; a few hundred bytes on disk
    assert caught.value.reason == "too_many_pixels"
    assert "100000×100000 = 10,000,000,000 pixels" in str(caught.value)


def test_pillow_guard_stays_on_at_the_limit() -> None:
    # Beyond twice the limit Pillow itself refuses to open the header (our check names the size).
    guard_decompression(1_000_000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(BytesIO(png_declaring(5000, 5000)))


def test_max_pixels_overrides_pillow_limits():
    # 200 MP: over Pillow's default hard limit, under max_pixels, so it gets as far as decoding.
    with pytest.raises(ImageRejected) as caught:
        run(png_declaring(20_000, 10_000), max_pixels=250_000_000)
    assert caught.value.reason == "truncated"


def test_rejects_a_resize_that_would_exceed_max_pixels():
    data = encode(make_photo((100, 100)), "PNG")
    with pytest.raises(ImageRejected) as caught:
        run(data, [Resize(width=5000, height=5000, fit="fill", upscale=True)], max_pixels=1_000_000)
    assert caught.value.reason == "too_many_pixels"
    assert "resize would produce 5000×5000" in str(caught.value)


def test_deadline_is_checked_before_each_operation():
    data = encode(make_photo((100, 100)), "PNG")
    with pytest.raises(ImageRejected) as caught:
        process_image(data, [Filter(filter="invert")], None, 85, 1_000_000, deadline=time.monotonic() - 1)
    assert caught.value.reason == "time_limit"
    assert "before filter" in str(caught.value)
    assert run(data, [Filter(filter="invert")]).width == 100


# variants: one decode, every output


def variant(name: str, operations: str, output_format: str | None = None, quality: int = 85) -> Variant:
    return Variant(name=name, operations=parse_operations(operations, 20), output_format=output_format, quality=quality)


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Each decode of an original: the first operations it was asked to draft for."""
    seen: list = []
    original = pipeline._decode

    def spy(data, firsts, max_pixels):
        seen.append(firsts)
        return original(data, firsts, max_pixels)

    monkeypatch.setattr(pipeline, "_decode", spy)
    return seen


def test_variants_decode_the_original_once_and_match_separate_runs(large_jpeg, decodes):
    variants = [
        variant("thumb", "resize(width=200,height=200,fit=cover)", "webp"),
        variant("large", "resize(width=1200),watermark", "jpeg", quality=70),
        variant("grey", "filter(name=grayscale)", "png"),
    ]
    processed = process_variants(large_jpeg, variants, 50_000_000)

    assert len(decodes) == 1
    assert list(processed.outputs) == ["thumb", "large", "grey"]
    for spec in variants:
        alone = run(large_jpeg, spec.operations, spec.output_format, spec.quality)
        made = processed.outputs[spec.name]
        assert (made.format, made.width, made.height) == (alone.format, alone.width, alone.height)
        assert mean_difference(decode(made).convert("RGB"), decode(alone).convert("RGB")) < 3


def test_variants_draft_at_the_scale_the_largest_one_needs(large_jpeg, drafts):
    variants = [variant("small", "resize(width=200)"), variant("medium", "resize(width=1000)")]
    processed = process_variants(large_jpeg, variants, 50_000_000)

    (draft,) = drafts
    _, (_, _, decoded_width, _) = draft
    assert decoded_width == 2401 / 2  # 1000 px needs 1/2; 200 px alone would have had 1/8
    assert processed.draft_scale == 2401 / decoded_width
    assert [processed.outputs[name].width for name in ("small", "medium")] == [200, 1000]


def test_variants_without_a_leading_resize_decode_at_full_size(large_jpeg, drafts):
    processed = process_variants(
        large_jpeg, [variant("small", "resize(width=200)"), variant("flipped", "flip,resize(width=300)")], 50_000_000
    )
    assert drafts == [] and processed.draft_scale == 1.0
    assert processed.outputs["flipped"].width == 300


def test_variants_made_from_a_drafted_decode_leave_it_as_it_was(large_jpeg):
    """Each variant's resample reads the shared decode, without a copy of it first."""
    variants = [
        variant("thumb", "resize(width=200,height=200,fit=cover),filter(name=invert)", "png"),
        variant("large", "resize(width=1000),watermark,brightness(factor=1.5)", "jpeg"),
    ]
    decoded = pipeline.decode_image(large_jpeg, variants, 50_000_000, None, "srgb", "strip", 1)
    assert decoded.draft_plans is not None
    before = decoded.still[0].tobytes()
    for index, spec in enumerate(variants):
        pipeline.make_variant(decoded, index, spec, None, 50_000_000, "srgb", None)
    assert decoded.still[0].tobytes() == before


def test_variants_each_start_from_the_original_not_from_another(large_jpeg):
    processed = process_variants(
        large_jpeg, [variant("inverted", "filter(name=invert)", "png"), variant("plain", "flip,flip", "png")],
        50_000_000,
    )
    original = Image.open(BytesIO(large_jpeg)).convert("RGB")
    assert mean_difference(decode(processed.outputs["plain"]).convert("RGB"), original) < 3


def test_a_failing_variant_fails_them_all_naming_it():
    data = encode(make_photo((400, 300)), "PNG")
    variants = [variant("fine", "resize(width=100)"), variant("bad", "crop(x=350,width=100,height=100)")]
    with pytest.raises(ImageRejected) as caught:
        process_variants(data, variants, 50_000_000)
    assert caught.value.reason == "crop_outside_image"
    assert str(caught.value).startswith("variant bad: crop:")


def test_variants_are_made_two_at_a_time(large_jpeg, monkeypatch):
    """Each variant's work runs while another's does (Pillow lets go of the GIL), in the order given."""
    running, overlapped = [0], [0]
    lock = threading.Lock()
    both_started = threading.Barrier(2, timeout=30)
    original = pipeline.make_variant

    def counted(decoded, index, *args, **kwargs):
        with lock:
            running[0] += 1
            overlapped[0] = max(overlapped[0], running[0])
        if index < 2:
            both_started.wait()  # the first two are under way at once, or this times out
        try:
            return original(decoded, index, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(pipeline, "make_variant", counted)
    variants = [variant(f"v{width}", f"resize(width={width})") for width in (100, 200, 300)]
    processed = process_variants(large_jpeg, variants, 50_000_000)
    assert overlapped[0] == 2
    assert [processed.outputs[name].width for name in ("v100", "v200", "v300")] == [100, 200, 300]
