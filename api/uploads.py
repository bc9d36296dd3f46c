"""Checks on an uploaded file before anything is stored: size, content and dimensions."""

import contextlib
import logging
from dataclasses import dataclass
from typing import BinaryIO

from PIL import ExifTags, Image, UnidentifiedImageError

from api.errors import InvalidInput, UnsupportedImage
from common.formats import CONTENT_TYPES, INPUT_FORMATS, PILLOW_FORMATS, REQUESTABLE_FORMATS, accepted_list
from common.imaging import declared_size

logger = logging.getLogger("api")


@dataclass(frozen=True)
class SniffedImage:
    format: str
    width: int
    height: int
    content_type: str
    # The sizes the image may have once its EXIF orientation is applied: one when the header says
    # (JPEG), both ways round when it would take decoding to know.
    upright_sizes: tuple[tuple[int, int], ...] = ()


def sniff_image(file: BinaryIO, size: int, max_pixels: int) -> SniffedImage:
    """Identify the image by its content (never its name) from its header; pixels are not decoded.

    Only the plugins of the accepted formats look at the bytes. Whatever they raise on a hostile
    file is a refusal of that file (415), never an error of the API.
    """
    if size == 0:
        raise InvalidInput("the uploaded file is empty", field="file")
    try:
        file.seek(0)
        with Image.open(file, formats=PILLOW_FORMATS) as image:
            pil_format, (width, height) = image.format, image.size
            upright = _upright_sizes(image)
    except Image.DecompressionBombError:
        # Far past the limit: Pillow's own guard refused it from the header.
        width, height = declared_size(file) or (max_pixels + 1, 1)
        pil_format = None
    except UnidentifiedImageError:
        raise UnsupportedImage(
            f"the file is not an image in a supported format (by its content); accepted: {accepted_list()}",
            field="file",
        ) from None
    except Exception as exc:  # any decoder failure means "not an image we can read"
        logger.info("upload refused: unreadable image (%s: %s)", type(exc).__name__, exc)
        reason = (str(exc) or type(exc).__name__)[:200]
        raise UnsupportedImage(f"the file starts like an image but cannot be read: {reason}", field="file") from None
    finally:
        _rewind(file)
    if width * height > max_pixels:
        raise InvalidInput(
            f"image is {width}x{height} ({width * height} pixels); at most {max_pixels} pixels are accepted",
            field="file",
        )
    assert pil_format is not None
    name = INPUT_FORMATS[pil_format]
    return SniffedImage(
        format=name, width=width, height=height, content_type=CONTENT_TYPES[name], upright_sizes=upright
    )


def _upright_sizes(image: Image.Image) -> tuple[tuple[int, int], ...]:
    width, height = image.size
    if image.format not in ("JPEG", "MPO"):
        return ((width, height), (height, width))  # other formats' EXIF may sit after the pixels
    turned = image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
    return ((height, width),) if turned else ((width, height),)


def _rewind(file: BinaryIO) -> None:
    # Closed by a plugin: the upload is refused above, or fails when stored.
    with contextlib.suppress(ValueError, OSError):
        file.seek(0)


def parse_output_format(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    normalised = value.strip().lower()
    normalised = "jpeg" if normalised == "jpg" else normalised
    if normalised not in REQUESTABLE_FORMATS:
        raise InvalidInput(
            f"output_format {value[:40]!r} is not supported; allowed: {', '.join(REQUESTABLE_FORMATS)}",
            field="output_format",
        )
    return normalised


def parse_choice(value: str | None, field: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed` (the first when the field is not given), case-insensitive; else a 422 naming the field."""
    if value is None or not value.strip():
        return allowed[0]
    normalised = value.strip().lower()
    if normalised not in allowed:
        raise InvalidInput(f"{field} {value[:40]!r} is not supported; allowed: {', '.join(allowed)}", field=field)
    return normalised


def safe_filename(name: str | None) -> str | None:
    """The client's filename, kept for information only: path parts and control characters removed."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:255] or None
