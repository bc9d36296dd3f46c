"""Test images made on the fly, and ways to compare them."""

import struct
import zlib
from io import BytesIO

from PIL import Image, ImageChops, ImageStat

from test_images.generate import photo_like


def make_photo(size: tuple[int, int] = (640, 480), mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Photo-like content from the project's one generator (never flat colours); in LA and RGBA
    modes the alpha is a vertical ramp."""
    photo = photo_like(*size, seed)
    if mode in ("LA", "RGBA"):
        photo = photo.convert(mode)
        photo.putalpha(Image.linear_gradient("L").resize(size))
    return photo.convert(mode)


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute difference per pixel and band, on 0..255."""
    bands = ImageStat.Stat(ImageChops.difference(first, second)).mean
    return sum(bands) / len(bands)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height (a decompression bomb); its pixel data is that of a 1×1 image."""
    buffer = BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, width, height)  # after signature, length and b"IHDR"
    struct.pack_into(">I", data, 29, zlib.crc32(data[12:29]))
    return bytes(data)


def png_of(size: tuple[int, int], mode: str = "RGB") -> bytes:
    """A photo-like PNG of the given size."""
    buffer = BytesIO()
    make_photo(size, mode).save(buffer, "PNG")
    return buffer.getvalue()
