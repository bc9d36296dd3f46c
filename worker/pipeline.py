"""Decode, normalise, transform and encode one image: pure Pillow, no I/O.

The one place that knows Pillow's formats, modes, EXIF, ICC profiles and encoders. Processors get
an image in mode L, LA, RGB or RGBA; everything else is converted here after decoding.
"""

import struct
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Literal, cast

from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from common.formats import (
    ANIMATED_INPUTS,
    ANIMATED_OUTPUTS,
    CONTENT_TYPES,
    MAX_ICC_PROFILE_BYTES,
    PILLOW_FORMATS,
    ColorPolicy,
    MetadataPolicy,
    OutputFormat,
    RequestedFormat,
    accepted_list,
)
from common.imaging import declared_size
from common.operations import Operation, Resize
from common.variants import DEFAULT_VARIANT, Variant
from worker.colour import to_srgb
from worker.encoding import ICC_COLOUR_SPACES, Animation, OverBudget, can_animate, choose_output_format, encode_within
from worker.metadata import Metadata as KeptMetadata
from worker.metadata import kept_metadata
from worker.processors import NotApplicable, apply_to_frames, output_size
from worker.processors.resize import ResizePlan, plan_resize, resample

# An animation's frames are all decoded up to this many (MAX_FRAMES in the worker's settings).
DEFAULT_MAX_FRAMES = 500

RejectReason = Literal[
    "undecodable", "unsupported_format", "too_many_pixels", "too_many_frames", "truncated", "time_limit",
    "out_of_memory", "processing_error", "output_too_large", "crop_outside_image", "unknown_logo",
]

# What Pillow's decoders raise on malformed input (libavif's decoder: RuntimeError).
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, NotImplementedError, RuntimeError,
)

# The scales libjpeg decodes at directly (DCT scaling), largest first.
DRAFT_SCALES = (8, 4, 2)


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
    frames: int = 1


@dataclass(frozen=True)
class DecodedImage:
    """The original decoded once, ready for every variant: frames in L, LA, RGB or RGBA.

    `still` is the first frame alone (what a still output is made from); `animated` every frame,
    when a variant may be an animation. With a JPEG draft (`draft_plans` set), the image is smaller
    than the original by `draft_scale`, and each variant's first operation (a resize) is carried
    out by its plan from there; the colour conversion then follows it, as it would on one output.
    """

    width: int
    height: int
    source_format: str | None
    kept: KeptMetadata
    still: list[Image.Image]
    icc: bytes | None
    animated: list[Image.Image] | None = None
    animation: Animation | None = None
    draft_plans: tuple[ResizePlan, ...] | None = None
    draft_scale: float = 1.0
    in_srgb: bool = False


@dataclass(frozen=True)
class ProcessedVariants:
    """Every variant's output, in the order asked for, and what the one decode gave."""

    outputs: dict[str, ProcessedImage]
    decoded_width: int
    decoded_height: int
    draft_scale: float


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
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_bytes: int | None = None,
) -> ProcessedImage:
    """Apply `operations` in order and encode the result: one output (see process_variants).

    Output format: see worker.encoding.output_format. `max_pixels` is checked on the declared size
    before any pixel is decoded (Pillow's own guard, at the same limit, stops far larger ones while
    reading the header); for an animation it counts every frame, and there are at most
    `max_frames`. No operation may produce more than `max_output_pixels` (default `max_pixels`),
    over all frames, whatever it asks for. `deadline` (a time.monotonic() value) is checked before
    each operation and before encoding; one Pillow call cannot be interrupted, which is why the
    worker runs this in a process it can stop (worker/isolation.py). `color` and `metadata` are the
    job's policies (common/formats.py): by default pixels are converted to sRGB and no metadata is
    written. `max_bytes`: the highest quality whose result fits, or `output_too_large`.
    """
    variant = single_output(operations, output_format, quality)
    processed = process_variants(
        data, [variant], max_pixels, deadline, max_output_pixels, color, metadata, max_frames, max_bytes
    )
    return processed.outputs[variant.name]


def single_output(operations: Sequence[Operation], output_format: str | None, quality: int) -> Variant:
    """The one `default` variant of a job without variants. Unchecked: callers pass what a job
    message (or a test) already holds."""
    return Variant.model_construct(
        name=DEFAULT_VARIANT, operations=list(operations),
        output_format=cast(RequestedFormat | None, output_format), quality=quality,
    )


def process_variants(
    data: bytes,
    variants: Sequence[Variant],
    max_pixels: int,
    deadline: float | None = None,
    max_output_pixels: int | None = None,
    color: ColorPolicy = "srgb",
    metadata: MetadataPolicy = "strip",
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_bytes: int | None = None,
) -> ProcessedVariants:
    """Decode `data` once and make every variant from it; all or none (the first failure, with
    the variant named when there are several, is raised). Limits as in process_image, per variant;
    `deadline` is the whole job's."""
    decoded = decode_image(data, variants, max_pixels, deadline, color, metadata, max_frames)

    output_limit = max_output_pixels or max_pixels

    def make(index: int) -> ProcessedImage:
        return make_variant(decoded, index, variants[index], deadline, output_limit, color, max_bytes)

    if len(variants) == 1:
        return ProcessedVariants({variants[0].name: make(0)}, decoded.width, decoded.height, decoded.draft_scale)
    # Pillow lets go of the GIL while it resamples and encodes: two variants at a time use both
    # cores of an idle machine (a 4-variant job of 12 MP: 247 → 159 ms), and cost no more CPU.
    pending = [_variant_threads().submit(make, index) for index in range(len(variants))]
    outputs = {}
    for variant, future in zip(variants, pending, strict=True):
        try:
            outputs[variant.name] = future.result()
        except ImageRejected as exc:
            for other in pending:
                other.cancel()
            raise ImageRejected(exc.reason, f"variant {variant.name}: {exc}") from None
    return ProcessedVariants(outputs, decoded.width, decoded.height, decoded.draft_scale)


VARIANT_THREADS = 2
_variant_pool: ThreadPoolExecutor | None = None


def _variant_threads() -> ThreadPoolExecutor:
    """Made on first use, in the image process that uses it (never in a parent that forks one)."""
    global _variant_pool
    if _variant_pool is None:
        _variant_pool = ThreadPoolExecutor(VARIANT_THREADS, thread_name_prefix="variant")
    return _variant_pool


def decode_image(
    data: bytes,
    variants: Sequence[Variant],
    max_pixels: int,
    deadline: float | None,
    color: ColorPolicy,
    metadata: MetadataPolicy,
    max_frames: int,
) -> DecodedImage:
    """Decode the original at the largest JPEG draft scale every variant allows, with all its
    frames if any variant may be an animation."""
    firsts = [variant.operations[0] if variant.operations else None for variant in variants]
    image, drafted = _decode(data, firsts, max_pixels)
    source_format = image.format
    kept = kept_metadata(image, metadata)
    raw, animated, animation = [image], None, None
    if _is_animation(image) and any(can_animate(v.output_format, source_format) for v in variants):
        raw, animation = _read_frames(image, max_frames, max_pixels, deadline)
        animated, _ = _normalise_frames(raw)
    still, icc = _normalise_frames(raw[:1])
    in_srgb = color == "srgb" and drafted is None
    if in_srgb:
        still = [to_srgb(frame, icc) for frame in still]
        animated = [to_srgb(frame, icc) for frame in animated] if animated is not None else None
    plans, scale = drafted if drafted is not None else (None, 1.0)
    return DecodedImage(
        width=image.width, height=image.height, source_format=source_format, kept=kept, still=still, icc=icc,
        animated=animated, animation=animation, draft_plans=plans, draft_scale=scale, in_srgb=in_srgb,
    )


def make_variant(
    decoded: DecodedImage,
    index: int,
    variant: Variant,
    deadline: float | None,
    max_output_pixels: int,
    color: ColorPolicy,
    max_bytes: int | None,
) -> ProcessedImage:
    """Transform a copy of the decoded image by the variant's operations and encode it."""
    operations = list(variant.operations)
    animation = decoded.animation if can_animate(variant.output_format, decoded.source_format) else None
    source = decoded.animated if animation is not None and decoded.animated is not None else decoded.still
    icc = decoded.icc
    if decoded.draft_plans is not None:
        # The resample makes a new image from the shared decode, which it only reads.
        frames = [resample(source[0], decoded.draft_plans[index], decoded.draft_scale)]
        operations = operations[1:]
    else:
        frames = [frame.copy() for frame in source]
    if color == "srgb":
        if not decoded.in_srgb:
            frames = [to_srgb(frame, icc) for frame in frames]
        icc = None
    for operation in operations:
        _check_deadline(deadline, operation.name)
        _check_output_pixels(frames[0], operation, max_output_pixels, len(frames))
        try:
            frames = apply_to_frames(frames, operation)
        except NotApplicable as exc:
            raise ImageRejected(exc.reason, f"{operation.name}: {exc}") from None
    _check_deadline(deadline, "encoding")
    result = frames[0]
    format_ = choose_output_format(
        variant.output_format, decoded.source_format, result.mode in ("LA", "RGBA"), animation is not None
    )
    if format_ not in ANIMATED_OUTPUTS:
        frames, animation = frames[:1], None
    try:
        encoded = encode_within(frames, format_, variant.quality, icc, decoded.kept, animation, max_bytes, deadline)
    except OverBudget as exc:
        raise ImageRejected("output_too_large", str(exc)) from None
    return ProcessedImage(
        data=encoded,
        width=result.width,
        height=result.height,
        format=format_,
        content_type=CONTENT_TYPES[format_],
        frames=len(frames),
    )


def _check_deadline(deadline: float | None, step: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ImageRejected("time_limit", f"the job ran out of its time limit before {step}")


def _check_output_pixels(image: Image.Image, operation: Operation, max_pixels: int, frames: int = 1) -> None:
    """Refuse an operation whose output would pass the limit (over all frames), before it runs."""
    width, height = output_size(image.size, operation)
    if width * height * frames > max_pixels:
        each = f" in each of {frames} frames" if frames > 1 else ""
        raise ImageRejected(
            "too_many_pixels",
            f"{operation.name} would produce {width}×{height} = {width * height:,} pixels{each}; "
            f"the output limit is {max_pixels:,}" + (" over all frames" if frames > 1 else ""),
        )


def _is_animation(image: Image.Image) -> bool:
    # is_animated looks for a second frame only; n_frames would walk a GIF to its end.
    return image.format in ANIMATED_INPUTS and bool(getattr(image, "is_animated", False))


def _read_frames(
    image: Image.Image, max_frames: int, max_pixels: int, deadline: float | None
) -> tuple[list[Image.Image], Animation]:
    """Every frame of an animation, as whole pictures, with their durations and the loop count;
    the number of frames and the pixels over all of them are checked before the second is decoded."""
    width, height = image.size
    count = _count_frames(image, min(max_frames, max_pixels // (width * height)))
    if count > max_frames:
        raise ImageRejected(
            "too_many_frames", f"the animation has more than {max_frames:,} frames; at most {max_frames:,} are accepted"
        )
    if width * height * count > max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"the animation is at least {count:,} frames of {width}×{height} = {width * height * count:,} pixels; "
            f"the limit over all frames is {max_pixels:,}",
        )
    loop = image.info.get("loop", 0)
    frames, durations = [], []
    try:
        for index in range(count):
            _check_deadline(deadline, f"decoding frame {index + 1}")
            image.seek(index)
            image.load()
            frames.append(image.copy())
            durations.append(max(0, int(image.info.get("duration") or 0)))
    except _DECODE_ERRORS as exc:
        raise _rejection(exc) from exc
    return frames, Animation(tuple(durations), loop if isinstance(loop, int) and loop >= 0 else 0)


def _count_frames(image: Image.Image, limit: int) -> int:
    """The number of frames, or limit + 1 when there are more. WebP, AVIF and APNG say it in their
    headers; a GIF must be walked block by block, so the walk (Pillow's own, as its n_frames does,
    without decoding) stops past the limit: a 25 MB GIF can hold a million 1-pixel frames."""
    if image.format != "GIF":
        return int(getattr(image, "n_frames", 1))
    count = 1
    try:
        while count <= limit:
            image._seek(count, False)  # type: ignore[attr-defined]
            count += 1
    except EOFError:
        pass
    image.seek(0)
    return count


def _normalise_frames(frames: list[Image.Image]) -> tuple[list[Image.Image], bytes | None]:
    """_normalise on every frame, then one mode for all (with alpha if any frame has it)."""
    normalised = [_normalise(frame) for frame in frames]
    icc = normalised[0][1]
    images = [image for image, _ in normalised]
    modes = {image.mode for image in images}
    if len(modes) > 1:
        colour = "RGB" if modes & {"RGB", "RGBA"} else "L"
        mode = colour + ("A" if modes & {"LA", "RGBA"} else "")
        images = [image.convert(mode) for image in images]
    return images, icc


def _decode(
    data: bytes, firsts: Sequence[Operation | None], max_pixels: int
) -> tuple[Image.Image, tuple[tuple[ResizePlan, ...], float] | None]:
    """Open, check the declared size, decode and apply the EXIF orientation.

    `firsts`: each variant's first operation. Returns the image and, when those were folded into a
    JPEG draft, their plans and the scale the image was decoded at (see _draft).
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
        drafted = _draft(image, firsts)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", f"refused while decoding: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise _rejection(exc) from exc
    return image, drafted


def _draft(image: Image.Image, firsts: Sequence[Operation | None]) -> tuple[tuple[ResizePlan, ...], float] | None:
    """Have libjpeg decode at 1/2, 1/4 or 1/8 scale when every variant's first operation shrinks
    that much (the largest variant, the one shrinking least, sets the scale).

    DCT scaling skips most of the decoding work (12 MP to 800 px: ~50 ms instead of ~190 ms). The
    scale never takes the decoded image below any resize's output, and each plan is computed on the
    full-size geometry, so every output has exactly the size a full decode would give.
    """
    if image.format not in ("JPEG", "MPO") or not firsts:
        return None
    width, height = image.size
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    oriented = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    plans = []
    for first in firsts:
        if not isinstance(first, Resize) or first.gravity == "smart" or first.fit == "pad":
            return None  # not a resize, the region depends on the pixels, or the output is more than the resample
        plan = plan_resize(oriented, first)
        if plan is None or plan.reduction < 2:
            return None
        plans.append(plan)
    reduction = min(plan.reduction for plan in plans)
    # Pillow picks the largest of 1/8, 1/4, 1/2 that keeps both sides at least as large as the request,
    # each side's ratio rounded down: asking for exactly width // scale by height // scale makes it choose
    # `scale` whatever the aspect ratio (ceil(1365 / 4) = 342 rows would give 1365 // 342 = 3, so 1/2).
    scale = next(candidate for candidate in DRAFT_SCALES if candidate <= reduction)
    request = (width // scale, height // scale)
    result = image.draft(image.mode, request)
    if result is None:
        return None
    _, (_, _, scaled_width, _) = result
    return tuple(plans), width / scaled_width


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
    elif mode not in ICC_COLOUR_SPACES or "transparency" in image.info:
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
