"""Colour and privacy: embedded profiles to sRGB unless kept; metadata stripped unless kept;
the orientation applied first."""

from io import BytesIO

import pytest
from PIL import ExifTags, Image, ImageCms, IptcImagePlugin, PngImagePlugin

from common.formats import MAX_ICC_PROFILE_BYTES, MAX_METADATA_BYTES
from common.imaging import guard_decompression
from common.operations import Resize
from tests.support.images import (
    IPTC_CITY,
    PRIVATE_STRINGS,
    camera_jpeg,
    make_photo,
    mean_difference,
    rgb_icc_profile,
    with_iptc,
)
from worker.pipeline import ProcessedImage, process_image

MAX_PIXELS = 50_000_000
P3 = rgb_icc_profile()
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
P3_RED = (200, 50, 50)


def encode(image: Image.Image, format_: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format_, **options)
    return buffer.getvalue()


def run(data: bytes, output_format: str = "jpeg", **policies: str) -> ProcessedImage:
    guard_decompression(MAX_PIXELS)
    return process_image(data, [Resize(width=64)], output_format, 95, MAX_PIXELS, **policies)


def decoded(result: ProcessedImage) -> Image.Image:
    image = Image.open(BytesIO(result.data))
    image.load()
    return image


def expected_in_srgb(colour: tuple[int, ...], mode: str = "RGB") -> tuple[int, ...]:
    source = ImageCms.ImageCmsProfile(BytesIO(P3))
    converted = ImageCms.profileToProfile(Image.new(mode, (1, 1), colour), source, SRGB, outputMode=mode)
    return converted.getpixel((0, 0))


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 4) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


def gps_of(image: Image.Image) -> dict:
    return dict(image.getexif().get_ifd(ExifTags.IFD.GPSInfo))


# colour


def test_display_p3_is_converted_to_srgb_and_left_untagged() -> None:
    source = encode(Image.new("RGB", (128, 96), P3_RED), "PNG", icc_profile=P3)

    image = decoded(run(source, "png"))

    assert not image.info.get("icc_profile")
    assert close(image.getpixel((10, 10)), expected_in_srgb(P3_RED), tolerance=1)
    assert not close(image.getpixel((10, 10)), P3_RED, tolerance=10)  # the conversion moved it


def test_color_keep_keeps_the_profile_and_the_pixels() -> None:
    source = encode(Image.new("RGB", (128, 96), P3_RED), "PNG", icc_profile=P3)

    image = decoded(run(source, "png", color="keep"))

    assert image.info.get("icc_profile") == P3
    assert close(image.getpixel((10, 10)), P3_RED, tolerance=1)


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_conversion_keeps_alpha(output_format: str) -> None:
    source = Image.new("RGBA", (128, 96), (*P3_RED, 255))
    source.paste((*P3_RED, 0), (0, 0, 64, 96))
    image = decoded(run(encode(source, "PNG", icc_profile=P3), output_format))

    assert image.mode == "RGBA"
    assert image.getpixel((5, 5))[3] == 0 and image.getpixel((60, 5))[3] == 255
    assert close(image.getpixel((60, 5))[:3], expected_in_srgb(P3_RED), tolerance=3)


def test_a_photo_in_p3_as_jpeg_looks_like_its_srgb_rendering() -> None:
    photo = make_photo((320, 240))
    source = encode(photo, "JPEG", quality=95, icc_profile=P3)
    reference = ImageCms.profileToProfile(photo, ImageCms.ImageCmsProfile(BytesIO(P3)), SRGB)
    guard_decompression(MAX_PIXELS)

    converted = decoded(process_image(source, [], "png", 95, MAX_PIXELS))

    # JPEG's own loss is about 2.5 here; the unconverted pixels are 7 away from the reference.
    assert mean_difference(converted, reference) < 3.5 < mean_difference(converted, photo)


@pytest.mark.parametrize(
    "icc",
    [
        b"\x00" * 16 + b"RGB " + b"\xff" * 200,  # says RGB, is garbage
        rgb_icc_profile(description="not a real one")[:140],  # cut inside its tag table
        rgb_icc_profile(padding=MAX_ICC_PROFILE_BYTES + 1),  # larger than any real profile
    ],
    ids=["garbage", "truncated", "huge"],
)
def test_unusable_profiles_leave_the_pixels_as_they_are(icc: bytes) -> None:
    source = encode(Image.new("RGB", (128, 96), P3_RED), "JPEG", quality=100, icc_profile=icc)

    for color in ("srgb", "keep"):
        image = decoded(run(source, "png", color=color))
        assert close(image.getpixel((10, 10)), P3_RED, tolerance=2)
    assert not decoded(run(source, "png")).info.get("icc_profile")


# metadata


@pytest.mark.parametrize("output_format", ["jpeg", "png", "webp"])
def test_metadata_is_stripped_by_default(output_format: str) -> None:
    result = run(camera_jpeg(), output_format)

    image = decoded(result)
    assert len(image.getexif()) == 0 and not gps_of(image)
    assert "xmp" not in image.info and "comment" not in image.info
    for secret in PRIVATE_STRINGS:
        assert secret not in result.data


def test_metadata_keep_keeps_exif_and_xmp_without_the_orientation() -> None:
    result = run(camera_jpeg(orientation=6), metadata="keep")

    image = decoded(result)
    exif = image.getexif()
    assert image.size == (64, 85)  # turned upright before anything else
    assert exif[ExifTags.Base.Artist] == "Ann Example" and ExifTags.Base.Orientation not in exif
    assert gps_of(image)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert b"SecretXmpCity" in result.data


def test_metadata_copyright_keeps_only_artist_and_copyright() -> None:
    result = run(camera_jpeg(), metadata="copyright")

    exif = decoded(result).getexif()
    assert dict(exif) == {ExifTags.Base.Artist: "Ann Example", ExifTags.Base.Copyright: "(c) Ann Example"}
    for secret in (b"SN-SECRET-1234", b"SecretXmpCity", b"SecretComment", b"PhoneCo"):
        assert secret not in result.data


def test_orientation_is_applied_before_stripping() -> None:
    image = decoded(run(camera_jpeg(orientation=6)))

    assert image.size == (64, 85)
    red, green, blue = image.getpixel((60, 2))  # the red corner went to the top right
    assert red > 200 and green < 80 and blue < 80


def test_iptc_is_stripped_unless_kept() -> None:
    jpeg = with_iptc(camera_jpeg())
    assert IptcImagePlugin.getiptcinfo(Image.open(BytesIO(jpeg))) == {(2, 90): b"SecretIptcCy"}

    for metadata in ("strip", "copyright"):
        assert b"SecretIptcCy" not in run(jpeg, metadata=metadata).data


def test_metadata_keep_keeps_iptc_in_a_jpeg_and_only_the_iptc_record() -> None:
    result = run(with_iptc(camera_jpeg(orientation=6)), metadata="keep")

    image = decoded(result)
    assert IptcImagePlugin.getiptcinfo(image) == {(2, 90): b"SecretIptcCy"}
    assert list(image.info["photoshop"]) == [0x0404]  # the thumbnail-like resource is not copied
    assert image.size == (64, 85) and image.getexif()[ExifTags.Base.Artist] == "Ann Example"


def test_metadata_keep_keeps_the_iptc_of_a_tiff_in_a_jpeg() -> None:
    source = encode(make_photo((160, 120)), "TIFF", tiffinfo={33723: IPTC_CITY})

    assert IptcImagePlugin.getiptcinfo(decoded(run(source, metadata="keep"))) == {(2, 90): b"SecretIptcCy"}


@pytest.mark.parametrize("output_format", ["png", "webp", "avif", "gif"])
def test_iptc_is_not_written_where_the_format_has_no_place_for_it(output_format: str) -> None:
    result = run(with_iptc(camera_jpeg()), output_format, metadata="keep")

    assert b"SecretIptcCy" not in result.data


@pytest.mark.parametrize(("output_format", "key"), [("jpeg", "comment"), ("gif", "comment"), ("png", "Comment")])
def test_metadata_keep_keeps_the_comment(output_format: str, key: str) -> None:
    result = run(camera_jpeg(), output_format, metadata="keep")

    comment = decoded(result).info[key]
    assert (comment.encode() if isinstance(comment, str) else comment) == b"SecretComment"


@pytest.mark.parametrize("source_format", ["GIF", "PNG"])
def test_metadata_keep_keeps_a_gif_or_png_comment_in_a_jpeg(source_format: str) -> None:
    options: dict[str, object] = {"comment": b"SecretComment"}
    if source_format == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", "SecretComment")
        options = {"pnginfo": text}
    source = encode(make_photo((160, 120)), source_format, **options)

    assert decoded(run(source, metadata="keep")).info["comment"] == b"SecretComment"
    assert b"SecretComment" not in run(source).data


@pytest.mark.parametrize("output_format", ["webp", "avif"])
def test_a_comment_is_not_written_where_the_format_has_no_place_for_it(output_format: str) -> None:
    assert b"SecretComment" not in run(camera_jpeg(), output_format, metadata="keep").data


def test_kept_metadata_over_its_limit_is_dropped_not_copied() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = "x" * (MAX_METADATA_BYTES + 1)
    source = encode(make_photo((160, 120)), "PNG", exif=exif)

    result = run(source, "png", metadata="keep")

    assert len(decoded(result).getexif()) == 0 and len(result.data) < MAX_METADATA_BYTES


@pytest.mark.parametrize("output_format", ["jpeg", "gif"])
def test_a_comment_the_size_of_the_limit_fits_a_jpeg_segment(output_format: str) -> None:
    source = encode(make_photo((160, 120)), "GIF", comment=b"c" * MAX_METADATA_BYTES)
    too_long = encode(make_photo((160, 120)), "GIF", comment=b"c" * (MAX_METADATA_BYTES + 1))

    assert len(decoded(run(source, output_format, metadata="keep")).info["comment"]) == MAX_METADATA_BYTES
    assert "comment" not in decoded(run(too_long, output_format, metadata="keep")).info
