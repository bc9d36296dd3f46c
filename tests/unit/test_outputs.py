"""Outputs: AVIF, GIF and auto; animations kept through every operation; a byte budget."""

from io import BytesIO

import pytest
from PIL import Image, ImageSequence

from common.imaging import guard_decompression
from common.operations import Filter, Resize, Watermark
from tests.support.images import make_photo, mean_difference
from worker.pipeline import ImageRejected, ProcessedImage, process_image

MAX_PIXELS = 50_000_000
COLOURS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (240, 240, 0)]


def encode(image: Image.Image, format_: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format_, **options)
    return buffer.getvalue()


def animation(format_: str, size: tuple[int, int] = (120, 90), durations=(80, 120, 160, 200), loop: int = 3,
              alpha: bool = False) -> bytes:
    """Four frames of flat colours (a transparent left half with `alpha`), each its own duration."""
    frames = []
    for colour in COLOURS[: len(durations)]:
        frame = Image.new("RGBA" if alpha else "RGB", size, colour)
        if alpha:
            frame.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
        frames.append(frame)
    options: dict[str, object] = {"lossless": True, "kmin": 1, "kmax": 1} if format_ == "WEBP" else {}
    if alpha and format_ == "GIF":
        options["disposal"] = 2
    return encode(frames[0], format_, save_all=True, append_images=frames[1:], duration=list(durations), loop=loop,
                  **options)


def run(data: bytes, operations: list | None = None, output_format: str | None = None, quality: int = 85,
        max_pixels: int = MAX_PIXELS, **options: object) -> ProcessedImage:
    guard_decompression(max_pixels)
    return process_image(data, operations or [], output_format, quality, max_pixels, **options)


def frames_of(result: ProcessedImage) -> tuple[Image.Image, list[Image.Image], list[int]]:
    image = Image.open(BytesIO(result.data))
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        frame.load()
        frames.append(frame.convert("RGBA"))
        durations.append(frame.info.get("duration"))
    return image, frames, durations


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


# formats


def test_avif_output_is_an_avif_close_to_the_source() -> None:
    photo = make_photo((320, 240))

    result = run(encode(photo, "PNG"), output_format="avif", quality=80)

    image = Image.open(BytesIO(result.data))
    assert (result.format, result.content_type, image.format) == ("avif", "image/avif", "AVIF")
    assert mean_difference(image.convert("RGB"), photo) < 6


@pytest.mark.parametrize("output_format", ["auto", "avif", "webp", "png", "gif"])
def test_alpha_survives_every_format_that_has_it(output_format: str) -> None:
    source = make_photo((160, 120), "RGBA")
    source.paste((0, 0, 0, 0), (0, 0, 80, 120))

    image = Image.open(BytesIO(run(encode(source, "PNG"), output_format=output_format).data)).convert("RGBA")

    assert image.getpixel((20, 60))[3] < 10 and image.getpixel((150, 110))[3] > 200


def test_auto_is_avif_for_a_still_and_webp_for_an_animation() -> None:
    assert run(encode(make_photo((80, 60)), "JPEG"), output_format="auto").format == "avif"
    result = run(animation("GIF"), output_format="auto")
    assert result.format == "webp" and result.frames == 4
    assert Image.open(BytesIO(result.data)).n_frames == 4


# animations


@pytest.mark.parametrize(
    ("source_format", "output_format", "written"),
    [("GIF", None, "GIF"), ("GIF", "webp", "WEBP"), ("WEBP", None, "WEBP"), ("WEBP", "gif", "GIF")],
)
def test_an_animation_keeps_its_frames_timing_and_loop(
    source_format: str, output_format: str | None, written: str
) -> None:
    result = run(animation(source_format), [Resize(width=60)], output_format)

    image, frames, durations = frames_of(result)
    assert image.format == written and result.frames == len(frames) == 4
    assert durations == [80, 120, 160, 200]
    assert image.info.get("loop") == 3
    for frame, colour in zip(frames, COLOURS, strict=True):
        assert frame.size == (60, 45) and close(frame.getpixel((30, 22)), (*colour, 255))


def test_every_frame_goes_through_every_operation() -> None:
    operations = [
        Resize(width=80, height=80, fit="cover"), Filter(type="grayscale"), Watermark(text="ACME", size=0.2, opacity=1)
    ]

    _, frames, _ = frames_of(run(animation("GIF"), operations, "webp"))

    assert len(frames) == 4
    for frame in frames:
        red, green, blue, _ = frame.getpixel((40, 10))
        assert frame.size == (80, 80) and abs(red - green) < 6 and abs(green - blue) < 6
        # the watermark's white text is on every frame
        assert max(frame.crop((0, 50, 80, 80)).convert("L").get_flattened_data()) > 240


@pytest.mark.parametrize("output_format", ["gif", "webp"])
def test_animated_alpha_stays_transparent(output_format: str) -> None:
    _, frames, _ = frames_of(run(animation("WEBP", alpha=True), output_format=output_format))

    for frame, colour in zip(frames, COLOURS, strict=True):
        assert frame.getpixel((10, 45))[3] == 0 and close(frame.getpixel((100, 45)), (*colour, 255))


def repeats_forever(avif: bytes) -> bool:
    """Whether an AVIF sequence's edit list (ISO BMFF `elst`) says to repeat: flag 1."""
    box = avif.find(b"elst")
    return box > 0 and avif[box + 7] & 1 == 1


@pytest.mark.parametrize("source_format", ["GIF", "WEBP"])
def test_avif_keeps_an_animation_with_its_frames_and_timing(source_format: str) -> None:
    result = run(animation(source_format, loop=0), [Resize(width=60)], "avif")

    image, frames, durations = frames_of(result)
    assert (image.format, result.format, result.content_type) == ("AVIF", "avif", "image/avif")
    assert result.frames == len(frames) == 4 and durations == [80, 120, 160, 200]
    assert repeats_forever(result.data)
    for frame, colour in zip(frames, COLOURS, strict=True):
        assert frame.size == (60, 45) and close(frame.getpixel((30, 22)), (*colour, 255))


def test_an_animated_avif_loops_forever_whatever_the_source_says() -> None:
    assert repeats_forever(run(animation("GIF", loop=3), output_format="avif").data)


def test_an_animated_avif_keeps_alpha() -> None:
    _, frames, _ = frames_of(run(animation("WEBP", alpha=True), output_format="avif"))

    assert len(frames) == 4
    for frame, colour in zip(frames, COLOURS, strict=True):
        assert frame.getpixel((10, 45))[3] < 10 and close(frame.getpixel((100, 45)), (*colour, 255))


def test_a_still_stays_a_still_avif() -> None:
    result = run(encode(make_photo((80, 60)), "GIF"), output_format="avif")

    image = Image.open(BytesIO(result.data))
    assert result.frames == 1 and image.format == "AVIF" and getattr(image, "n_frames", 1) == 1


@pytest.mark.parametrize("output_format", ["jpeg", "png"])
def test_a_still_format_takes_the_first_frame(output_format: str) -> None:
    result = run(animation("GIF"), [Resize(width=60)], output_format)

    image = Image.open(BytesIO(result.data))
    assert result.frames == 1 and getattr(image, "n_frames", 1) == 1
    assert close(image.convert("RGBA").getpixel((30, 22)), (*COLOURS[0], 255))


def gif_of_tiny_frames(count: int) -> bytes:
    """A GIF of `count` one-pixel frames sharing one palette: about 20 bytes a frame."""
    header = b"GIF89a" + b"\x01\x00\x01\x00" + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x21\xf9\x04\x00\x01\x00\x00\x00" + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02\x02\x44\x01\x00"
    return header + frame * count + b"\x3b"


@pytest.mark.parametrize("format_", ["GIF", "WEBP"])
def test_an_animation_with_too_many_frames_fails_before_decoding_them(format_: str) -> None:
    frames = [Image.new("RGB", (4, 4), (index % 256, 0, 0)) for index in range(300)]
    data = encode(frames[0], format_, save_all=True, append_images=frames[1:], duration=40, lossless=True)

    with pytest.raises(ImageRejected) as rejected:
        run(data, max_frames=100, output_format=format_.lower())
    assert rejected.value.reason == "too_many_frames"
    assert "more than 100 frames" in str(rejected.value)
    assert run(data, output_format="png", max_frames=100).frames == 1  # a still output reads one frame
    assert run(data, max_frames=300, output_format=format_.lower()).frames == 300


def test_a_gif_of_a_million_frames_is_counted_only_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import GifImagePlugin

    data = gif_of_tiny_frames(1_000_000)  # 21 MB, under the upload limit
    assert len(data) < 25 * 1024 * 1024
    assert Image.open(BytesIO(gif_of_tiny_frames(3))).n_frames == 3  # the blocks are well formed
    steps = []
    walk = GifImagePlugin.GifImageFile._seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", lambda self, *args: steps.append(1) or walk(self, *args))

    with pytest.raises(ImageRejected) as rejected:
        run(data, max_frames=500)

    assert rejected.value.reason == "too_many_frames" and "more than 500 frames" in str(rejected.value)
    assert len(steps) < 1_000  # walked past the limit, not through a million frames


def test_the_pixel_limit_counts_every_frame() -> None:
    data = animation("GIF", size=(400, 300))  # 4 × 120,000 pixels

    with pytest.raises(ImageRejected) as rejected:
        run(data, max_pixels=400_000)
    assert rejected.value.reason == "too_many_pixels" and "over all frames" in str(rejected.value)
    assert run(data, output_format="jpeg", max_pixels=400_000).frames == 1


def test_the_output_limit_counts_every_frame() -> None:
    guard_decompression(MAX_PIXELS)
    with pytest.raises(ImageRejected) as rejected:
        process_image(animation("GIF"), [Resize(width=1000, upscale=True)], "webp", 85, MAX_PIXELS,
                      max_output_pixels=2_000_000)
    assert rejected.value.reason == "too_many_pixels" and "4 frames" in str(rejected.value)


# byte budget


@pytest.mark.parametrize("output_format", ["jpeg", "webp", "avif"])
def test_max_bytes_gives_the_highest_quality_that_fits(output_format: str) -> None:
    source = encode(make_photo((480, 360)), "PNG")
    at_85 = run(source, output_format=output_format, quality=85)
    at_40 = run(source, output_format=output_format, quality=40)
    assert len(at_40.data) < len(at_85.data)

    result = run(source, output_format=output_format, quality=85, max_bytes=len(at_40.data))

    assert len(at_40.data) * 0.9 <= len(result.data) <= len(at_40.data)
    assert run(source, output_format=output_format, max_bytes=len(at_85.data)).data == at_85.data


@pytest.mark.parametrize("output_format", ["webp", "avif"])
def test_max_bytes_applies_to_an_animation(output_format: str) -> None:
    source = animation("GIF", size=(240, 180))
    full = run(source, [Filter(type="emboss")], output_format, quality=95)

    result = run(source, [Filter(type="emboss")], output_format, quality=95, max_bytes=len(full.data) * 2 // 3)

    assert result.frames == 4 and len(result.data) <= len(full.data) * 2 // 3
    assert Image.open(BytesIO(result.data)).n_frames == 4


def test_max_bytes_too_small_for_an_animated_avif_fails_clearly() -> None:
    with pytest.raises(ImageRejected) as rejected:
        run(animation("GIF", size=(240, 180)), [Filter(type="emboss")], "avif", max_bytes=600)
    assert rejected.value.reason == "output_too_large"
    assert "avif result" in str(rejected.value) and "max_bytes=600" in str(rejected.value)


@pytest.mark.parametrize("output_format", ["jpeg", "avif"])
def test_max_bytes_below_the_lowest_quality_fails_clearly(output_format: str) -> None:
    with pytest.raises(ImageRejected) as rejected:
        run(encode(make_photo((640, 480)), "PNG"), output_format=output_format, max_bytes=600)
    assert rejected.value.reason == "output_too_large"
    assert "max_bytes=600" in str(rejected.value) and "lowest quality" in str(rejected.value)


def test_max_bytes_on_a_lossless_format_fails_naming_the_way_out() -> None:
    with pytest.raises(ImageRejected) as rejected:
        run(encode(make_photo((320, 240)), "PNG"), output_format="png", max_bytes=1000)
    assert rejected.value.reason == "output_too_large" and "no quality to lower" in str(rejected.value)
