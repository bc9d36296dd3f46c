"""Encoding: which format a result is written in, and writing it (one frame or an animation),
within a byte budget when the job sets one."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

from PIL import Image

from common.formats import ANIMATED_OUTPUTS, INPUT_FORMATS, KEPT_FORMATS, OUTPUT_FORMATS, OutputFormat, output_format
from worker.metadata import NONE, Metadata

ICC_COLOUR_SPACES = {"L": b"GRAY", "LA": b"GRAY", "RGB": b"RGB ", "RGBA": b"RGB "}
LOSSY_FORMATS = frozenset({"jpeg", "webp", "avif"})
AVIF_SPEED = 8
LOWEST_QUALITY = 1
# A binary search over 1..100 needs at most 7 encodings; one more for the requested quality.
MAX_BUDGET_ENCODINGS = 8


class OverBudget(Exception):
    """No quality gives a result within the byte budget; str() says how close it came."""


@dataclass(frozen=True)
class Animation:
    """How the frames of an animation are shown: per-frame durations (ms) and the loop count (0: forever)."""

    durations: tuple[int, ...]
    loop: int


def choose_output_format(
    requested: str | None, source_format: str | None, has_alpha: bool, animated: bool
) -> OutputFormat:
    """The format to write: the requested one; `auto`: WebP for an animation, else AVIF; none
    requested: the input's when it is an output format too, else PNG with alpha, JPEG without."""
    if requested:
        if requested.lower() == "auto":
            return "webp" if animated else "avif"
        format_ = output_format(requested.lower())
        if format_ is None:
            raise ValueError(f"unknown output format {requested!r}; use {', '.join(OUTPUT_FORMATS)} or auto")
        return format_
    source = INPUT_FORMATS.get(source_format or "", "")
    kept = output_format(source) if source in KEPT_FORMATS else None
    if kept is not None:
        return kept
    return "png" if has_alpha else "jpeg"


def can_animate(requested: str | None, source_format: str | None) -> bool:
    """Whether the result may be an animation, before the frames are read."""
    if requested:
        return requested.lower() in ANIMATED_OUTPUTS or requested.lower() == "auto"
    return INPUT_FORMATS.get(source_format or "") in ANIMATED_OUTPUTS


def encode_within(
    frames: Sequence[Image.Image], format_: str, quality: int, icc: bytes | None, kept: Metadata,
    animation: Animation | None, max_bytes: int | None, deadline: float | None,
) -> bytes:
    """Encode at `quality`; with `max_bytes`, at the highest quality up to it whose result fits
    (a bounded binary search), or raise OverBudget."""
    data = encode(frames, format_, quality, icc, kept, animation)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    if format_ not in LOSSY_FORMATS:
        raise OverBudget(
            f"the {format_} result is {len(data):,} bytes, over max_bytes={max_bytes:,}, and {format_} has no "
            f"quality to lower; ask for {', '.join(sorted(LOSSY_FORMATS))}"
        )
    best, smallest = None, len(data)
    low, high = LOWEST_QUALITY, quality - 1
    for _ in range(MAX_BUDGET_ENCODINGS - 1):
        if low > high:
            break
        if deadline is not None and time.monotonic() > deadline:
            break
        middle = (low + high + 1) // 2
        candidate = encode(frames, format_, middle, icc, kept, animation)
        smallest = min(smallest, len(candidate))
        if len(candidate) <= max_bytes:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    if best is None:
        raise OverBudget(
            f"the {format_} result is {smallest:,} bytes at the lowest quality tried, over max_bytes={max_bytes:,}"
        )
    return best


def encode(
    frames: Sequence[Image.Image], format_: str, quality: int, icc: bytes | None, kept: Metadata = NONE,
    animation: Animation | None = None,
) -> bytes:
    """Write the frames (one unless `animation`) in `format_`; every frame has the first's mode."""
    prepared = [_for_format(frame, format_) for frame in frames]
    first = prepared[0]
    if icc and (format_ == "gif" or icc[16:20] != ICC_COLOUR_SPACES.get(first.mode)):
        icc = None  # e.g. an RGB profile after grayscale: it would misdescribe the pixels
    options: dict[str, object] = dict({
        "jpeg": {"quality": quality, "optimize": False, "progressive": False},
        # zlib's default level: 9 takes two to three times as long for 1-3 % smaller files.
        "png": {"compress_level": 6},
        # libwebp's default method; 6 takes about twice as long for a few % smaller files.
        "webp": {"quality": quality, "method": 4},
        # libavif's speed 8 of 0-10 (its default is 6): about a third of the time for files 1-2 % larger
        # (bench.formats); one thread, as the image process runs one job on one core.
        "avif": {"quality": quality, "speed": AVIF_SPEED, "max_threads": 1},
        "gif": {},
    }[format_])
    if animation is not None and len(prepared) > 1:
        # Pillow's AVIF writer takes no loop count: its animations loop forever.
        options |= {"save_all": True, "append_images": prepared[1:], "duration": list(animation.durations),
                    "loop": animation.loop}
        if format_ == "gif" and first.mode == "RGBA":
            options["disposal"] = 2  # clear to transparent between frames: they are whole pictures
        if format_ == "webp" and first.mode == "RGBA":
            # Every frame a key frame: libwebp otherwise crops frames to what is opaque, and the
            # file then declares no alpha (readers such as Pillow's show it opaque).
            options |= {"kmin": 1, "kmax": 1}
    buffer = BytesIO()
    first.save(buffer, format_.upper(), icc_profile=icc, **options, **kept.save_options(format_))
    return buffer.getvalue()


def _for_format(image: Image.Image, format_: str) -> Image.Image:
    if format_ == "jpeg" and image.mode in ("LA", "RGBA"):
        return flatten(image)
    if format_ in ("webp", "avif") and image.mode in ("L", "LA"):
        return image.convert("RGB" + image.mode[1:])  # WebP has no greyscale
    if format_ == "gif" and image.mode == "LA":
        return image.convert("RGBA")
    return image


def flatten(image: Image.Image) -> Image.Image:
    """Composite an LA or RGBA image onto white, for JPEG."""
    background = Image.new(image.mode[:-1], image.size, "white")
    background.paste(image, mask=image.getchannel("A"))
    return background
