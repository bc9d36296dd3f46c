"""resize: fit the image to a box (contain, cover, fill or pad), never enlarging it unless asked to."""

from dataclasses import dataclass

from PIL import Image

from common.operations import Resize
from worker.processors.geometry import fill_colour
from worker.processors.gravity import place
from worker.processors.registry import processor

RESAMPLE = Image.Resampling.LANCZOS
# Image.resize first shrinks by a whole factor with Image.reduce (a fast box average) and leaves at
# least this factor to LANCZOS; from 3.0 on, Pillow documents the result as indistinguishable
# from a full LANCZOS pass.
REDUCING_GAP = 3.0

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ResizePlan:
    """Resample `region` of the source (in source pixels) to `size`."""

    size: tuple[int, int]
    region: Box

    @property
    def reduction(self) -> float:
        """How many times smaller than the region the output is, on the less reduced axis."""
        left, top, right, bottom = self.region
        return min((right - left) / self.size[0], (bottom - top) / self.size[1])


def plan_resize(
    source: tuple[int, int], operation: Resize, image: Image.Image | None = None
) -> ResizePlan | None:
    """The geometry of `operation` on an image of size `source`; None if it leaves it as is.

    contain: fit inside the box, keeping the aspect ratio (width or height alone is a box too).
    cover: fill the box, keeping the aspect ratio, and crop the overflow where `gravity` says
    (`smart` needs the image; without it, the centre); without upscale, an image smaller than the
    box on one side keeps its size there (it is cropped only).
    fill: stretch to the box; without upscale, each side is clamped to the source's.
    pad: as contain; the processor then pads to the box.
    """
    full: Box = (0, 0, *source)
    size = operation.resampled_size(source)
    region = full
    if operation.fit == "cover":
        scale = operation.scale(source)
        region = place(source, (size[0] / scale, size[1] / scale), operation.gravity, image)
    if size == source and region == full:
        return None
    return ResizePlan(size, region)


def resample(image: Image.Image, plan: ResizePlan, scale: float = 1.0) -> Image.Image:
    """Carry out `plan` on `image`, which is `scale` times smaller than the plan's source
    (a JPEG decoded with DCT scaling)."""
    left, top, right, bottom = (value / scale for value in plan.region)
    if plan.size == (right - left, bottom - top) and all(
        value.is_integer() for value in (left, top)
    ):
        return image.crop((int(left), int(top), int(right), int(bottom)))
    return image.resize(
        plan.size, RESAMPLE, box=(left, top, right, bottom), reducing_gap=REDUCING_GAP
    )


def _fix_resize(first_frame: Image.Image, operation: Resize) -> Resize:
    """Smart gravity's choice on the first frame, as the nearest fixed gravity, for every frame."""
    if operation.gravity != "smart" or operation.fit != "cover":
        return operation
    plan = plan_resize(first_frame.size, operation, first_frame)
    if plan is None:
        return operation.model_copy(update={"gravity": "center"})
    left, top, right, bottom = plan.region
    free_x, free_y = first_frame.width - (right - left), first_frame.height - (bottom - top)
    horizontal = "" if free_x < 1 else ["west", "", "east"][min(2, int(3 * left / free_x))]
    vertical = "" if free_y < 1 else ["north", "", "south"][min(2, int(3 * top / free_y))]
    gravity = "-".join(part for part in (vertical, horizontal) if part) or "center"
    return operation.model_copy(update={"gravity": gravity})


@processor("resize", fix=_fix_resize)
def resize(image: Image.Image, operation: Resize) -> Image.Image:
    plan = plan_resize(image.size, operation, image)
    resized = image if plan is None else resample(image, plan)
    return _pad(resized, operation) if operation.fit == "pad" else resized


def _pad(image: Image.Image, operation: Resize) -> Image.Image:
    """The image on a canvas of the box's size, filled with `background`, placed by `gravity`."""
    assert operation.width is not None and operation.height is not None
    box = (operation.width, operation.height)
    if image.size == box:
        return image
    mode = image.mode
    if operation.background == "transparent" and mode in ("L", "RGB"):
        mode += "A"
        image = image.convert(mode)
    canvas = Image.new(mode, box, fill_colour(operation.background, mode))
    gravity = "center" if operation.gravity == "smart" else operation.gravity
    left, top, _, _ = place(box, (float(image.width), float(image.height)), gravity)
    canvas.paste(image, (int(left), int(top)))
    return canvas
