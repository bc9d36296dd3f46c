"""crop, rotate, flip: cutting and turning, never resampling unless the angle asks for it."""

from PIL import Image, ImageColor

from common.operations import Crop, Flip, Rotate
from worker.processors.gravity import Size, place
from worker.processors.registry import NotApplicable, processor

_QUARTER_TURNS = {
    90: Image.Transpose.ROTATE_270,  # Pillow turns counter-clockwise; the operation turns clockwise
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}
_FLIPS = {
    "horizontal": Image.Transpose.FLIP_LEFT_RIGHT,
    "vertical": Image.Transpose.FLIP_TOP_BOTTOM,
    "both": Image.Transpose.ROTATE_180,
}


def crop_box(source: Size, operation: Crop, image: Image.Image | None = None) -> tuple[int, int, int, int]:
    """The pixels `operation` keeps of an image of size `source`; NotApplicable when its box
    reaches outside the image."""
    problem = operation.outside(source)
    if problem is not None:
        raise NotApplicable("crop_outside_image", problem)
    box = operation.fixed_box(source) or place(source, operation.region(source), operation.gravity, image)
    left, top, right, bottom = (round(value) for value in box)
    return left, top, min(source[0], right), min(source[1], bottom)


def _fix_crop(first_frame: Image.Image, operation: Crop) -> Crop:
    """The box smart gravity chooses on the first frame, for every frame."""
    if operation.gravity != "smart":
        return operation
    left, top, right, bottom = crop_box(first_frame.size, operation, first_frame)
    return Crop.model_validate({"x": left, "y": top, "width": right - left, "height": bottom - top})


@processor("crop", fix=_fix_crop)
def crop(image: Image.Image, operation: Crop) -> Image.Image:
    return image.crop(crop_box(image.size, operation, image))


@processor("rotate")
def rotate(image: Image.Image, operation: Rotate) -> Image.Image:
    angle = operation.angle % 360
    if angle == 0:
        return image
    if angle.is_integer() and int(angle) in _QUARTER_TURNS:
        return image.transpose(_QUARTER_TURNS[int(angle)])
    if operation.background == "transparent" and image.mode in ("L", "RGB"):
        image = image.convert(image.mode + "A")
    return image.rotate(
        -angle, Image.Resampling.BICUBIC, expand=True, fillcolor=fill_colour(operation.background, image.mode)
    )


@processor("flip")
def flip(image: Image.Image, operation: Flip) -> Image.Image:
    return image.transpose(_FLIPS[operation.direction])


def fill_colour(colour: str, mode: str) -> int | tuple[int, ...]:
    """A declared colour (common.operations.Colour) as a pixel value of `mode` (L, LA, RGB or RGBA)."""
    if colour == "transparent":
        return (0, 0) if mode == "LA" else (0, 0, 0, 0) if mode == "RGBA" else ImageColor.getcolor("white", mode)
    return ImageColor.getcolor(colour, mode)
