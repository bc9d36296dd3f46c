"""watermark: text over the image, white with a black outline so it reads on light and dark, or a
logo preset (common/logos.py) at its own colours.

The text is drawn once on a transparent canvas just big enough for it and composited where it
goes, so the cost follows the text's size, not the image's. The image keeps its mode: an L image
gets a grey-level watermark, LA and RGBA images are alpha-composited and keep their alpha.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from common.logos import MAX_LOGO_BYTES, MAX_LOGO_PIXELS, SHIPPED_DIR, logo_path
from common.operations import Watermark
from worker.processors.registry import NotApplicable, processor

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
MIN_TEXT_HEIGHT = 8
MARGIN = 0.02  # of the shorter side
TILE_ANGLE = 30

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
# The folder of logo presets; the image process sets it from the worker's settings.
_logo_dir: Path = SHIPPED_DIR


def use_logo_dir(directory: Path) -> None:
    global _logo_dir
    _logo_dir = directory


@processor("watermark")
def watermark(image: Image.Image, operation: Watermark) -> Image.Image:
    shorter = min(image.size)
    margin = round(shorter * MARGIN)
    height = max(MIN_TEXT_HEIGHT, round(shorter * operation.size))
    max_width, max_height = max(1, image.width - 2 * margin), max(1, image.height - 2 * margin)
    if operation.image is not None:
        stamp = _logo_stamp(operation.image, height, max_width, max_height, operation.opacity)
    else:
        stamp = _stamp(operation.text, height, max_width, max_height, operation.opacity)
    if image.mode in ("L", "LA"):
        stamp = stamp.convert("LA")
    image = image.copy()
    if operation.position == "tile":
        _tile(image, stamp.rotate(TILE_ANGLE, Image.Resampling.BICUBIC, expand=True), height)
    else:
        _composite(image, stamp, _place(operation.position, image.size, stamp.size, margin))
    return image


@lru_cache(maxsize=1)
def _font_path() -> Path | None:
    return FONT_PATH if FONT_PATH.is_file() else None


@lru_cache(maxsize=32)
def _font(size: int) -> Font:
    """DejaVu Sans Bold where installed, else Pillow's built-in font (scalable since Pillow 10.1)."""
    path = _font_path()
    return ImageFont.truetype(str(path), size) if path else ImageFont.load_default(size=size)


# Rendered stamps, reused: most jobs ask for the same text on outputs of a few sizes, and rendering
# costs about as much as encoding an 800 px JPEG. Only small stamps are kept (the cache stays under
# STAMP_CACHE_SIZE × 1 MB); callers never modify a stamp.
STAMP_CACHE_SIZE = 32
STAMP_CACHE_MAX_PIXELS = 256 * 1024
_stamps: OrderedDict[tuple[object, ...], Image.Image] = OrderedDict()
_stamps_lock = threading.Lock()


def _stamp(text: str, height: int, max_width: int, max_height: int, opacity: float) -> Image.Image:
    # The font is part of what a stamp looks like: a stamp drawn with another font is another stamp.
    key = (_font_path(), text, height, max_width, max_height, opacity)
    return _cached(key, lambda: _render_stamp(text, height, max_width, max_height, opacity))


def _logo_stamp(name: str, height: int, max_width: int, max_height: int, opacity: float) -> Image.Image:
    path = logo_path(_logo_dir, name)
    if path is None:
        raise NotApplicable("unknown_logo", f"there is no logo preset {name!r}")
    # The file's time is part of the key: a logo replaced in the folder is drawn anew.
    key = (path, path.stat().st_mtime_ns, height, max_width, max_height, opacity)
    return _cached(key, lambda: _render_logo(path, height, max_width, max_height, opacity))


def _render_logo(path: Path, height: int, max_width: int, max_height: int, opacity: float) -> Image.Image:
    """The logo scaled to `height` (less if it would not fit), on RGBA, faded by `opacity`."""
    if path.stat().st_size > MAX_LOGO_BYTES:
        raise NotApplicable("unknown_logo", f"the logo {path.stem!r} is larger than {MAX_LOGO_BYTES} bytes")
    try:
        with Image.open(path, formats=["PNG"]) as source:
            if source.width * source.height > MAX_LOGO_PIXELS:
                raise NotApplicable("unknown_logo", f"the logo {path.stem!r} is over {MAX_LOGO_PIXELS} pixels")
            logo = source.convert("RGBA")
    except (OSError, SyntaxError, ValueError) as exc:
        raise NotApplicable("unknown_logo", f"the logo {path.stem!r} cannot be read: {exc}") from None
    scale = min(height / logo.height, max_width / logo.width, max_height / logo.height)
    size = (max(1, round(logo.width * scale)), max(1, round(logo.height * scale)))
    return _faded(logo.resize(size, Image.Resampling.LANCZOS), opacity)


def _faded(stamp: Image.Image, opacity: float) -> Image.Image:
    if opacity < 1:
        stamp.putalpha(stamp.getchannel("A").point(lambda alpha: round(alpha * opacity)))
    return stamp


def _cached(key: tuple[object, ...], render: Callable[[], Image.Image]) -> Image.Image:
    with _stamps_lock:
        stamp = _stamps.get(key)
        if stamp is not None:
            _stamps.move_to_end(key)
            return stamp
    stamp = render()
    if stamp.width * stamp.height <= STAMP_CACHE_MAX_PIXELS:
        with _stamps_lock:
            _stamps[key] = stamp
            while len(_stamps) > STAMP_CACHE_SIZE:
                _stamps.popitem(last=False)
    return stamp


def _render_stamp(text: str, height: int, max_width: int, max_height: int, opacity: float) -> Image.Image:
    """The text on a transparent RGBA canvas, shrunk (down to MIN_TEXT_HEIGHT) to fit inside
    max_width × max_height; whatever still overflows at the smallest size is cut off. The canvas
    is measured before it is made, so its size never depends on what the text asks for."""
    font, stroke, box = _measure(text, height)
    width, rendered_height = box[2] - box[0], box[3] - box[1]
    scale = min(1.0, max_width / max(1, width), max_height / max(1, rendered_height))
    if scale < 1 and height > MIN_TEXT_HEIGHT:
        height = max(MIN_TEXT_HEIGHT, int(height * scale))
        font, stroke, box = _measure(text, height)
    left, top, right, bottom = box
    right, bottom = min(right, left + max_width), min(bottom, top + max_height)
    stamp = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)))
    ImageDraw.Draw(stamp).text(
        (-left, -top), text, font=font, fill="white", stroke_width=stroke, stroke_fill="black"
    )
    return _faded(stamp, opacity)


def _measure(text: str, height: int) -> tuple[Font, int, tuple[int, int, int, int]]:
    font, stroke = _font(height), max(1, round(height / 12))
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    return font, stroke, (int(left), int(top), int(right), int(bottom))


def _place(
    position: str, canvas: tuple[int, int], stamp: tuple[int, int], margin: int
) -> tuple[int, int]:
    (width, height), (stamp_width, stamp_height) = canvas, stamp
    if position == "center":
        return (width - stamp_width) // 2, (height - stamp_height) // 2
    vertical, horizontal = position.split("-")
    x = margin if horizontal == "left" else width - stamp_width - margin
    y = margin if vertical == "top" else height - stamp_height - margin
    return x, y


def _tile(image: Image.Image, stamp: Image.Image, text_height: int) -> None:
    """Repeat the stamp over the image in rows, every other row shifted by half a step."""
    gap = 2 * text_height
    step_x, step_y = stamp.width + gap, stamp.height + gap
    for row, y in enumerate(range(-gap // 2, image.height, step_y)):
        for x in range(-(row % 2) * step_x // 2, image.width, step_x):
            _composite(image, stamp, (x, y))


def _composite(image: Image.Image, stamp: Image.Image, at: tuple[int, int]) -> None:
    """Draw `stamp` over `image` in place with its top-left corner at `at`, clipped to the image."""
    x, y = at
    left, top = max(0, -x), max(0, -y)
    right, bottom = min(stamp.width, image.width - x), min(stamp.height, image.height - y)
    if right <= left or bottom <= top:
        return
    if image.mode in ("LA", "RGBA"):
        image.alpha_composite(stamp, dest=(x + left, y + top), source=(left, top, right, bottom))
    else:
        visible = stamp.crop((left, top, right, bottom))
        image.paste(visible, (x + left, y + top), visible)
