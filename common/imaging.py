"""Pillow settings and helpers for every process that opens untrusted images."""

import warnings
from io import BytesIO
from typing import BinaryIO

import pillow_heif
from PIL import Image

from common.formats import PILLOW_FORMATS


def register_plugins() -> None:
    """Teach Pillow HEIF (pillow-heif), for the primary image only: no thumbnails, depth maps or
    other auxiliary images are decoded, and libheif's own limits on sizes and counts stay on. One
    decoding thread: the worker's image process is one job on one core."""
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False, decode_threads=1)
    pillow_heif.options.DISABLE_SECURITY_LIMITS = False


register_plugins()


def guard_decompression(max_pixels: int) -> None:
    """Keep Pillow's decompression-bomb guard on, at the system's own pixel limit.

    Pillow warns above the limit and refuses at twice it while reading the header; callers check
    the declared size against the same limit themselves (and name it), so the warning is silenced
    and the refusal only ever meets images far beyond the limit.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def declared_size(data: bytes | BinaryIO) -> tuple[int, int] | None:
    """The width and height an accepted image's header declares, read by its format's own plugin
    without the bomb guard: only to name the size of an image the guard refused."""
    file = BytesIO(data) if isinstance(data, bytes) else data
    Image.init()
    for name in PILLOW_FORMATS:
        factory, accept = Image.OPEN[name]
        try:
            file.seek(0)
            if accept is not None and not accept(file.read(16)):
                continue
            file.seek(0)
            with factory(file, "") as image:
                return image.size
        except Exception:  # a header that does not parse names no size
            continue
        finally:
            file.seek(0)
    return None
