"""Decode, normalise, transform and encode one image: pure Pillow, no I/O.

The one place that knows Pillow's formats, modes, EXIF, ICC profiles and encoders. Processors get
an image in mode L, LA, RGB or RGBA; everything else is converted here after decoding.
"""

import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Literal, cast

from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from common.formats import (
    CONTENT_TYPES,
    INPUT_FORMATS,
    KEPT_FORMATS,
    MAX_ICC_PROFILE_BYTES,
    OUTPUT_FORMATS,
    PILLOW_FORMATS,
    ColorPolicy,
    MetadataPolicy,
    OutputFormat,
    accepted_list,
    output_format,
)
from common.imaging import declared_size
from common.operations import Operation, Resize
from worker.colour import to_srgb
from worker.metadata import NONE, Metadata, kept_metadata
from worker.processors import apply
from worker.processors.resize import ResizePlan, plan_resize, resample

RejectReason = Literal[
    "undecodable", "unsupported_format", "too_many_pixels", "truncated", "time_limit", "out_of_memory",
    "processing_error",
]

# What Pillow's decoders raise on malformed input.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, NotImplementedError)

# The scales libjpeg decodes at directly (DCT scaling), largest first.
DRAFT_SCALES = (8, 4, 2)
_ICC_COLOUR_SPACES = {"L": b"GRAY", "LA": b"GRAY", "RGB": b"RGB ", "RGBA": b"RGB "}


class ImageRejected(Exception):
    """The image cannot be processed, now or ever; `reason` is a short code, str() says why."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    width: int
    height: int
    format: OutputFormat
    content_type: str


def process_image(
    data: bytes,
    operations: Sequence[Operation],
    output_format: str | None,
    quality: int,
    max_pixels: int,
    deadline: float | None = None,
    max_output_pixels: int | None = None,
    color: ColorPolicy = "srgb",
    metadata: MetadataPolicy = "strip",
) -> ProcessedImage:
    """Apply `operations` in order and encode the result.

    Output format: `output_format`, else the input's if it is JPEG, PNG or WebP, else PNG for an
    image with alpha and JPEG otherwise. `max_pixels` is checked on the declared size before any
    pixel is decoded (Pillow's own guard, at the same limit, stops far larger ones while reading
    the header). No operation may produce more than `max_output_pixels` (default `max_pixels`),
    whatever it asks for. `deadline` (a time.monotonic() value) is checked before each operation
    and before encoding; one Pillow call cannot be interrupted, which is why the worker runs this
    in a process it can stop (worker/isolation.py). `color` and `metadata` are the job's policies
    (common/formats.py): by default pixels are converted to sRGB and no metadata is written.
    """
    operations = list(operations)
    max_output_pixels = max_output_pixels or max_pixels
    image, drafted = _decode(data, operations[0] if operations else None, max_pixels)
    source_format = image.format
    kept = kept_metadata(image, metadata)
    image, icc = _normalise(image)
    if drafted is not None:
        image = resample(image, *drafted)
        operations = operations[1:]
    if color == "srgb":
        image, icc = to_srgb(image, icc), None
    for operation in operations:
        _check_deadline(deadline, operation.name)
        _check_output_pixels(image, operation, max_output_pixels)
        image = apply(image, operation)
    _check_deadline(deadline, "encoding")
    format_ = _output_format(output_format, source_format, image)
    return ProcessedImage(
        data=_encode(image, format_, quality, icc, kept),
        width=image.width,
        height=image.height,
        format=format_,
        content_type=CONTENT_TYPES[format_],
    )


def _check_deadline(deadline: float | None, step: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ImageRejected("time_limit", f"the job ran out of its time limit before {step}")


def _check_output_pixels(image: Image.Image, operation: Operation, max_pixels: int) -> None:
    """Refuse an operation whose output would pass the limit, before it runs."""
    size = image.size
    if isinstance(operation, Resize):
        plan = plan_resize(image.size, operation)
        size = plan.size if plan is not None else size
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"{operation.name} would produce {width}×{height} = {width * height:,} pixels; "
            f"the output limit is {max_pixels:,}",
        )


def _decode(
    data: bytes, first: Operation | None, max_pixels: int
) -> tuple[Image.Image, tuple[ResizePlan, float] | None]:
    """Open, check the declared size, decode and apply the EXIF orientation.

    Returns the image and, when the first operation was folded into a JPEG draft, its plan and the
    scale the image was decoded at (see _draft).
    """
    try:
        image = Image.open(BytesIO(data), formats=PILLOW_FORMATS)
        width, height = image.size
    except Image.DecompressionBombError:
        # Far past the limit: Pillow's own guard refused it from the header.
        width, height = declared_size(data) or (max_pixels + 1, 1)
    except UnidentifiedImageError:
        raise _unrecognised(data) from None
    except _DECODE_ERRORS as exc:
        raise _rejection(exc) from exc
    if width * height > max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"image is {width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,}",
        )
    try:
        drafted = _draft(image, first)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", f"refused while decoding: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise _rejection(exc) from exc
    return image, drafted


def _draft(image: Image.Image, first: Operation | None) -> tuple[ResizePlan, float] | None:
    """Have libjpeg decode at 1/2, 1/4 or 1/8 scale when the first operation shrinks that much.

    DCT scaling skips most of the decoding work (12 MP to 800 px: ~50 ms instead of ~190 ms). The
    scale never takes the decoded image below the resize's output, and the plan is computed on the
    full-size geometry, so the output has exactly the size a full decode would give.
    """
    if image.format not in ("JPEG", "MPO") or not isinstance(first, Resize):
        return None
    width, height = image.size
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    oriented = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    plan = plan_resize(oriented, first)
    if plan is None or plan.reduction < 2:
        return None
    # Pillow picks the largest of 1/8, 1/4, 1/2 that keeps both sides at least as large as the request,
    # each side's ratio rounded down: asking for exactly width // scale by height // scale makes it choose
    # `scale` whatever the aspect ratio (ceil(1365 / 4) = 342 rows would give 1365 // 342 = 3, so 1/2).
    scale = next(candidate for candidate in DRAFT_SCALES if candidate <= plan.reduction)
    request = (width // scale, height // scale)
    result = image.draft(image.mode, request)
    if result is None:
        return None
    _, (_, _, scaled_width, _) = result
    return plan, width / scaled_width


def _unrecognised(data: bytes) -> ImageRejected:
    """Name the format of an image that is not accepted, if Pillow knows it at all."""
    try:
        with Image.open(BytesIO(data)) as image:
            found = image.format
    except Exception:  # other formats' plugins may raise anything on hostile bytes
        found = None
    if found is None:
        return ImageRejected(
            "undecodable", f"not a recognisable image ({len(data):,} bytes starting {data[:8]!r})"
        )
    return ImageRejected("unsupported_format", f"{found} images are not accepted; send {accepted_list()}")


def _rejection(exc: Exception) -> ImageRejected:
    message = str(exc) or type(exc).__name__
    if "truncated" in message.lower():
        return ImageRejected("truncated", f"image data is truncated: {message}")
    return ImageRejected("undecodable", f"image data is corrupt: {message}")


def _normalise(image: Image.Image) -> tuple[Image.Image, bytes | None]:
    """Bring the decoded image to L, LA, RGB or RGBA; return it with its usable ICC profile."""
    icc = image.info.get("icc_profile") or None
    if icc is not None and len(icc) > MAX_ICC_PROFILE_BYTES:
        icc = None
    mode = image.mode
    if mode == "CMYK":
        image, icc = _cmyk_to_rgb(image, icc)
    elif mode.startswith("I") or mode == "F":
        image = _grey_to_8_bit(image)
    elif mode == "1":
        image = image.convert("L")
    elif mode not in _ICC_COLOUR_SPACES or "transparency" in image.info:
        # P and PA, and L or RGB with a transparent colour key; also RGBX, YCbCr and the like.
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    # EXIF (its orientation is applied), XMP, comments and the like do not go to the output.
    image.info = {}
    return image, icc


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Convert through the embedded CMYK profile to sRGB when there is one: Pillow's plain
    conversion ignores ink behaviour and gives flat, too-bright colours. The result is left
    untagged, which means sRGB; the CMYK profile would be wrong on RGB data."""
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:  # None only when converting in place
                return converted, None
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or non-CMYK profile: fall back to the plain conversion
    return image.convert("RGB"), None


def _grey_to_8_bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit (I;16*), 32-bit (I) and float (F) greyscale to L; converting directly would
    clip everything above 255 to white. I holding 16-bit data, as PNG and TIFF decode to, is
    scaled as 16-bit; other ranges are stretched between their extremes."""
    low: float
    high: float
    if image.mode.startswith("I;16"):
        image = image.convert("I")
        low, high = 0, 65535
    else:
        # One band: (lowest, highest).
        low, high = cast(tuple[float, float], image.getextrema())
        if image.mode == "I" and low >= 0 and high <= 65535:
            low, high = 0, 65535
    scale = 255 / ((high - low) or 1)
    return image.point(lambda value: value * scale - low * scale).convert("L")


def _output_format(requested: str | None, source_format: str | None, image: Image.Image) -> OutputFormat:
    if requested:
        format_ = output_format(requested.lower())
        if format_ is None:
            raise ValueError(f"unknown output format {requested!r}; use {', '.join(OUTPUT_FORMATS)}")
        return format_
    source = INPUT_FORMATS.get(source_format or "", "")
    kept = output_format(source) if source in KEPT_FORMATS else None
    if kept is not None:
        return kept
    return "png" if image.mode in ("LA", "RGBA") else "jpeg"


def _encode(image: Image.Image, format_: str, quality: int, icc: bytes | None, kept: Metadata = NONE) -> bytes:
    if format_ == "jpeg" and image.mode in ("LA", "RGBA"):
        image = _flatten(image)
    elif format_ == "webp" and image.mode in ("L", "LA"):
        image = image.convert("RGB" + image.mode[1:])  # WebP has no greyscale
    if icc and icc[16:20] != _ICC_COLOUR_SPACES[image.mode]:
        icc = None  # e.g. an RGB profile after grayscale: it would misdescribe the pixels
    options: Mapping[str, object] = {
        "jpeg": {"quality": quality, "optimize": False, "progressive": False},
        # zlib's default level: 9 takes two to three times as long for 1-3 % smaller files.
        "png": {"compress_level": 6},
        # libwebp's default method; 6 takes about twice as long for a few % smaller files.
        "webp": {"quality": quality, "method": 4},
    }[format_]
    buffer = BytesIO()
    image.save(buffer, format_.upper(), icc_profile=icc, **options, **kept.save_options(format_))
    return buffer.getvalue()


def _flatten(image: Image.Image) -> Image.Image:
    """Composite an LA or RGBA image onto white, for JPEG."""
    background = Image.new(image.mode[:-1], image.size, "white")
    background.paste(image, mask=image.getchannel("A"))
    return background
