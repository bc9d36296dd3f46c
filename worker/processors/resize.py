"""resize: fit the image to a box (contain, cover or fill), never enlarging it unless asked to."""

from dataclasses import dataclass

from PIL import Image

from common.operations import Resize
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


def plan_resize(source: tuple[int, int], operation: Resize) -> ResizePlan | None:
    """The geometry of `operation` on an image of size `source`; None if it leaves it as is.

    contain: fit inside the box, keeping the aspect ratio (width or height alone is a box too).
    cover: fill the box, keeping the aspect ratio, and crop the overflow around the centre; without
    upscale, an image smaller than the box on one side keeps its size there (it is cropped only).
    fill: stretch to the box; without upscale, each side is clamped to the source's.
    """
    width, height = source
    full: Box = (0, 0, width, height)
    if operation.fit == "fill":
        assert operation.width is not None and operation.height is not None
        size = (operation.width, operation.height)
        if not operation.upscale:
            size = (min(size[0], width), min(size[1], height))
        region = full
    else:
        ratios = [
            box / side
            for box, side in ((operation.width, width), (operation.height, height))
            if box is not None
        ]
        scale = min(ratios) if operation.fit == "contain" else max(ratios)
        if not operation.upscale:
            scale = min(scale, 1.0)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        region = full
        if operation.fit == "cover":
            assert operation.width is not None and operation.height is not None
            size = (min(operation.width, size[0]), min(operation.height, size[1]))
            region = _centred(source, (size[0] / scale, size[1] / scale))
    if size == source and region == full:
        return None
    return ResizePlan(size, region)


def _centred(source: tuple[int, int], crop: tuple[float, float]) -> Box:
    # Whole-pixel offsets when not scaling, so a plain crop stays sharp.
    (width, height), (crop_width, crop_height) = source, crop
    left, top = max(0.0, (width - crop_width) / 2), max(0.0, (height - crop_height) / 2)
    if crop_width.is_integer() and crop_height.is_integer():
        left, top = float(int(left)), float(int(top))
    return (left, top, min(width, left + crop_width), min(height, top + crop_height))


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


@processor("resize")
def resize(image: Image.Image, operation: Resize) -> Image.Image:
    plan = plan_resize(image.size, operation)
    return image if plan is None else resample(image, plan)
