"""Checks on an uploaded file before anything is stored: size, content and dimensions."""

from dataclasses import dataclass
from typing import BinaryIO

from fastapi import HTTPException, status
from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}
OUTPUT_FORMATS = ("jpeg", "png", "webp")

# Settings.max_image_pixels is the limit, checked below from the header; Pillow's own would refuse
# images the settings allow, and without naming their size.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class SniffedImage:
    format: str
    width: int
    height: int
    content_type: str


def sniff_image(file: BinaryIO, size: int, max_pixels: int) -> SniffedImage:
    """Identify the image by its content (never its name) from its header; pixels are not decoded."""
    if size == 0:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "the uploaded file is empty")
    file.seek(0)
    try:
        with Image.open(file) as image:
            pil_format, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "the file is not an image in a supported format (by its content); accepted: "
            + ", ".join(sorted(ACCEPTED_FORMATS.values())),
        ) from exc
    finally:
        file.seek(0)
    if pil_format not in ACCEPTED_FORMATS:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"{pil_format} images are not supported; accepted: " + ", ".join(sorted(ACCEPTED_FORMATS.values())),
        )
    if width * height > max_pixels:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"image is {width}x{height} ({width * height} pixels); at most {max_pixels} pixels are accepted",
        )
    return SniffedImage(
        format=ACCEPTED_FORMATS[pil_format],
        width=width,
        height=height,
        content_type=Image.MIME.get(pil_format, "application/octet-stream"),
    )


def parse_output_format(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    normalised = value.strip().lower()
    normalised = "jpeg" if normalised == "jpg" else normalised
    if normalised not in OUTPUT_FORMATS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"output_format {value!r} is not supported; allowed: {', '.join(OUTPUT_FORMATS)}",
        )
    return normalised


def safe_filename(name: str | None) -> str | None:
    """The client's filename, kept for information only: path parts and control characters removed."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:255] or None
