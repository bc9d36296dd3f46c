"""crop, rotate, flip: cutting and turning, never resampling unless the angle asks for it."""

import math

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


def _crop_size(source: Size, operation: Crop) -> Size:
    try:
        left, top, right, bottom = crop_box(source, operation)
    except NotApplicable:
        return source
    return right - left, bottom - top


def _fix_crop(first_frame: Image.Image, operation: Crop) -> Crop:
    """The box smart gravity chooses on the first frame, for every frame."""
    if operation.gravity != "smart":
        return operation
    left, top, right, bottom = crop_box(first_frame.size, operation, first_frame)
    return Crop.model_validate({"x": left, "y": top, "width": right - left, "height": bottom - top})


@processor("crop", size=_crop_size, fix=_fix_crop)
def crop(image: Image.Image, operation: Crop) -> Image.Image:
    return image.crop(crop_box(image.size, operation, image))


def _rotated_size(source: Size, operation: Rotate) -> Size:
    angle = operation.angle % 360
    if angle in (0, 180):
        return source
    if angle in (90, 270):
        return source[1], source[0]
    # As Image.rotate(expand=True) measures it (same rounding): the corners turned about the
    # centre, out to whole pixels.
    radians = math.radians(angle)
    cos, sin = round(math.cos(radians), 15), round(math.sin(radians), 15)
    width, height = source
    centre_x, centre_y = width / 2.0, height / 2.0
    offset_x = cos * -centre_x + sin * -centre_y + centre_x
    offset_y = -sin * -centre_x + cos * -centre_y + centre_y
    corners = ((0, 0), (width, 0), (width, height), (0, height))
    xs = [cos * x + sin * y + offset_x for x, y in corners]
    ys = [-sin * x + cos * y + offset_y for x, y in corners]
    return math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys))


@processor("rotate", size=_rotated_size)
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
