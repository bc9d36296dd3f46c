"""autocontrast, brightness, contrast, saturation, pixelate: tone and colour, alpha untouched."""

from PIL import Image, ImageEnhance, ImageOps

from common.operations import Autocontrast, Brightness, Contrast, Pixelate, Saturation
from worker.processors.filter import colour_only
from worker.processors.registry import processor


@processor("autocontrast")
def autocontrast(image: Image.Image, operation: Autocontrast) -> Image.Image:
    return colour_only(image, lambda colour: ImageOps.autocontrast(colour, cutoff=operation.cutoff))


@processor("brightness")
def brightness(image: Image.Image, operation: Brightness) -> Image.Image:
    return colour_only(image, lambda colour: ImageEnhance.Brightness(colour).enhance(operation.factor))


@processor("contrast")
def contrast(image: Image.Image, operation: Contrast) -> Image.Image:
    return colour_only(image, lambda colour: ImageEnhance.Contrast(colour).enhance(operation.factor))


@processor("saturation")
def saturation(image: Image.Image, operation: Saturation) -> Image.Image:
    if image.mode in ("L", "LA"):
        return image  # no colour to saturate
    return colour_only(image, lambda colour: ImageEnhance.Color(colour).enhance(operation.factor))


@processor("pixelate")
def pixelate(image: Image.Image, operation: Pixelate) -> Image.Image:
    """Blocks of about `size` pixels (the image's side divided evenly), each the average of its
    pixels (alpha too, on premultiplied colour, so hidden colours do not show)."""
    blocks = (max(1, round(image.width / operation.size)), max(1, round(image.height / operation.size)))
    premultiplied = {"LA": "La", "RGBA": "RGBa"}.get(image.mode)
    source = image.convert(premultiplied) if premultiplied else image
    result = source.resize(blocks, Image.Resampling.BOX).resize(image.size, Image.Resampling.NEAREST)
    return result.convert(image.mode) if premultiplied else result
