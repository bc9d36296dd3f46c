"""Inputs as people have them: AVIF, HEIC, multi-picture JPEG, animations, multi-page TIFF.

Every file is made here by a real encoder (libavif, libheif with x265, libjpeg, libtiff, libwebp)."""

from io import BytesIO

import pytest
from PIL import Image

from api.errors import ApiError
from api.problems import status_of
from api.uploads import sniff_image
from common.formats import ACCEPTED_NAMES, CONTENT_TYPES, INPUT_FORMATS, PILLOW_FORMATS
from common.imaging import guard_decompression
from common.operations import Resize
from tests.support.images import make_photo, mean_difference
from worker.pipeline import ImageRejected, process_image

MAX_PIXELS = 50_000_000
RED, BLUE = (255, 0, 0), (0, 0, 255)


def encode(image: Image.Image, format_: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format_, **options)
    return buffer.getvalue()


def two_pictures(format_: str, size: tuple[int, int] = (120, 90), **options: object) -> bytes:
    """A file of two pictures, red then blue (fresh images: Pillow's MPO writer leaves its
    settings on the images it saved)."""
    first, second = Image.new("RGB", size, RED), Image.new("RGB", size, BLUE)
    return encode(first, format_, save_all=True, append_images=[second], **options)


def run(data: bytes, operations: list | None = None, output_format: str | None = "png", max_pixels: int = MAX_PIXELS):
    guard_decompression(max_pixels)
    return process_image(data, operations or [], output_format, 90, max_pixels)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(BytesIO(data))
    image.load()
    return image


def close_to(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(value - want) <= tolerance for value, want in zip(pixel[:3], expected, strict=False))


@pytest.mark.parametrize(("format_", "name"), [("AVIF", "avif"), ("HEIF", "heic")])
def test_avif_and_heic_photos_are_read_with_their_pixels(format_: str, name: str) -> None:
    photo = make_photo((320, 240))
    data = encode(photo, format_, quality=90)

    result = run(data)

    image = decoded(result.data)
    assert (result.width, result.height, image.mode) == (320, 240, "RGB")
    assert mean_difference(image, photo) < 6
    guard_decompression(MAX_PIXELS)
    sniffed = sniff_image(BytesIO(data), len(data), MAX_PIXELS)
    assert (sniffed.format, sniffed.width, sniffed.height) == (name, 320, 240)
    assert sniffed.content_type == CONTENT_TYPES[name]


@pytest.mark.parametrize("format_", ["AVIF", "HEIF"])
def test_avif_and_heic_keep_alpha(format_: str) -> None:
    photo = make_photo((160, 120), "RGBA")

    image = decoded(run(encode(photo, format_, quality=90)).data)

    assert image.mode == "RGBA"
    assert image.getpixel((80, 2))[3] < 40 and image.getpixel((80, 117))[3] > 215


@pytest.mark.parametrize(
    ("format_", "options"),
    [
        ("MPO", {}),
        ("TIFF", {}),
        ("HEIF", {}),
        ("GIF", {"duration": 100}),
        ("WEBP", {"duration": 100, "lossless": True}),
        ("AVIF", {"duration": 100}),
    ],
)
def test_a_file_of_several_pictures_gives_its_first_to_a_still_output(format_: str, options: dict) -> None:
    data = two_pictures(format_, **options)
    assert Image.open(BytesIO(data)).n_frames == 2

    result = run(data, [Resize(width=60)], output_format="jpeg")

    image = decoded(result.data)
    assert image.size == (60, 45)
    assert close_to(image.getpixel((30, 22)), RED)


def test_accepted_formats_are_one_list_for_the_door_and_the_worker() -> None:
    assert {"avif", "heic", "jpeg", "png", "webp", "gif", "bmp", "tiff"} == set(ACCEPTED_NAMES)
    assert "HEIF" in PILLOW_FORMATS and "AVIF" in PILLOW_FORMATS
    assert set(INPUT_FORMATS.values()) <= set(CONTENT_TYPES)


@pytest.mark.parametrize("format_", ["AVIF", "HEIF"])
def test_avif_and_heic_over_the_pixel_limit_are_refused_before_decoding(format_: str) -> None:
    data = encode(make_photo((400, 300)), format_, quality=50)

    with pytest.raises(ImageRejected) as rejected:
        run(data, max_pixels=100_000)
    assert rejected.value.reason == "too_many_pixels"
    assert "400×300" in str(rejected.value)

    guard_decompression(100_000)
    with pytest.raises(ApiError) as refused:
        sniff_image(BytesIO(data), len(data), 100_000)
    assert status_of(refused.value) == 422 and "400x300" in str(refused.value)


@pytest.mark.parametrize("format_", ["AVIF", "HEIF"])
@pytest.mark.parametrize("cut", [40, 200, 0.5])
def test_truncated_avif_and_heic_are_refused_by_name(format_: str, cut: float) -> None:
    data = encode(make_photo((200, 150)), format_, quality=70)
    data = data[: int(len(data) * cut) if cut < 1 else int(cut)]

    with pytest.raises(ImageRejected) as rejected:
        run(data)
    assert rejected.value.reason in ("truncated", "undecodable")
    guard_decompression(MAX_PIXELS)
    try:
        sniff_image(BytesIO(data), len(data), MAX_PIXELS)
    except ApiError as exc:
        assert status_of(exc) in (415, 422)


def test_a_heic_with_many_pictures_decodes_only_its_primary() -> None:
    pictures = [Image.new("RGB", (64, 64), (index, 0, 0)) for index in range(60)]
    data = encode(pictures[0], "HEIF", save_all=True, append_images=pictures[1:], quality=50)

    image = decoded(run(data).data)

    assert image.size == (64, 64) and close_to(image.getpixel((32, 32)), (0, 0, 0))
