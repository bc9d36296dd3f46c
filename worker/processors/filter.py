"""filter: one named filter per operation.

Alpha is kept as it is, except by blur, which blurs the edges of transparent areas too (on
premultiplied colour, so hidden colours under transparent pixels do not bleed in). Grayscale
returns L or LA; sepia returns RGB or RGBA, also for a greyscale input.
"""

from collections.abc import Callable

from PIL import Image, ImageFilter, ImageOps

from common.operations import Filter
from worker.processors.registry import processor

DEFAULT_BLUR_RADIUS = 2.0
# The sepia matrix of CSS's sepia(1): each output channel is a weighted sum of R, G and B.
SEPIA_MATRIX = (0.393, 0.769, 0.189, 0, 0.349, 0.686, 0.168, 0, 0.272, 0.534, 0.131, 0)
KERNELS = {
    "sharpen": ImageFilter.SHARPEN,
    "edge_enhance": ImageFilter.EDGE_ENHANCE,
    "contour": ImageFilter.CONTOUR,
    "emboss": ImageFilter.EMBOSS,
}
_PREMULTIPLIED = {"LA": "La", "RGBA": "RGBa"}


@processor("filter")
def apply_filter(image: Image.Image, operation: Filter) -> Image.Image:
    name = operation.filter
    if name == "grayscale":
        return image.convert("LA" if _has_alpha(image) else "L")
    if name == "blur":
        blur = ImageFilter.GaussianBlur(operation.radius or DEFAULT_BLUR_RADIUS)
        if _has_alpha(image):
            return image.convert(_PREMULTIPLIED[image.mode]).filter(blur).convert(image.mode)
        return image.filter(blur)
    if name == "sepia":
        return colour_only(image, lambda colour: colour.convert("RGB").convert("RGB", SEPIA_MATRIX))
    if name == "invert":
        return colour_only(image, ImageOps.invert)
    return colour_only(image, lambda colour: colour.filter(KERNELS[name]))


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _PREMULTIPLIED


def colour_only(
    image: Image.Image, function: Callable[[Image.Image], Image.Image]
) -> Image.Image:
    if not _has_alpha(image):
        return function(image)
    result = function(image.convert(image.mode[:-1]))
    result.putalpha(image.getchannel("A"))
    return result
