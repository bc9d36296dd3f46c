"""The operations a job can ask for, declared once.

Each operation is a pydantic model; the API validates requests with these models, the job message
carries them, and the worker's processor registry is keyed by the same names. The text grammar is

    resize,watermark
    resize(width=800,height=600,fit=cover),watermark(text="Hello, world",position=tile)

and a JSON array of objects with a "name" key is accepted too.
"""

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from PIL import ImageColor
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from common.logos import PRESET_PATTERN

MAX_DIMENSION = 16384
DEFAULT_BOX = 800
# Marks stacked on one character: enough for any script's accents, not for a tower of them
# (each mark raises the rendered text, which once made a 421×12,166 stamp out of 100 characters).
MAX_COMBINING_MARKS = 3
MAX_SPEC_LENGTH = 100_000

Size = tuple[int, int]


class _Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Parameter names the text grammar accepts for another one, e.g. filter(name=blur).
    text_synonyms: ClassVar[dict[str, str]] = {}

    def output_size(self, size: Size) -> Size:
        """The size of the result for an input of `size`: the same, unless the operation says
        otherwise. Exact (the worker's processors produce it), so the API can follow a job's size
        through its operations before any pixel is decoded."""
        return size


# Where a crop (or a cover resize, or a pad) keeps the picture: a side or corner, the centre, or
# `smart`: the region with the most detail.
Gravity = Literal[
    "center", "north", "south", "east", "west", "north-east", "north-west", "south-east", "south-west", "smart"
]
MAX_COLOUR_LENGTH = 40


def _check_colour(value: str) -> str:
    """A CSS colour (`white`, `#336699`, `rgb(0,0,0)`) or `transparent`."""
    value = value.strip().lower()
    if value == "transparent":
        return value
    if len(value) > MAX_COLOUR_LENGTH:
        raise ValueError(f"a colour is at most {MAX_COLOUR_LENGTH} characters")
    try:
        ImageColor.getrgb(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a colour (a name, #rrggbb, rgb(r,g,b) or transparent)") from None
    return value


Colour = Annotated[str, AfterValidator(_check_colour)]


class Resize(_Operation):
    """Fit the image to a box. Without width or height, the box is 800×800."""

    name: Literal["resize"] = "resize"
    width: int | None = Field(None, ge=1, le=MAX_DIMENSION)
    height: int | None = Field(None, ge=1, le=MAX_DIMENSION)
    fit: Literal["contain", "cover", "fill", "pad"] = "contain"
    upscale: bool = False
    gravity: Gravity = "center"
    background: Colour = "white"

    @model_validator(mode="after")
    def _default_box(self) -> "Resize":
        if self.width is None and self.height is None:
            object.__setattr__(self, "width", DEFAULT_BOX)
            object.__setattr__(self, "height", DEFAULT_BOX)
        if self.fit != "contain" and (self.width is None or self.height is None):
            raise ValueError(f"fit={self.fit} needs both width and height")
        return self

    def scale(self, size: Size) -> float:
        """How much a contain, cover or pad resize scales an image of `size` (fill stretches instead)."""
        ratios = [box / side for box, side in ((self.width, size[0]), (self.height, size[1])) if box is not None]
        scale = max(ratios) if self.fit == "cover" else min(ratios)
        return scale if self.upscale else min(scale, 1.0)

    def resampled_size(self, size: Size) -> Size:
        """The size the image is resampled to (before a pad fills the rest of the box)."""
        width, height = size
        if self.fit == "fill":
            assert self.width is not None and self.height is not None
            return (self.width, self.height) if self.upscale else (min(self.width, width), min(self.height, height))
        scale = self.scale(size)
        scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
        if self.fit == "cover":
            assert self.width is not None and self.height is not None
            return min(self.width, scaled[0]), min(self.height, scaled[1])
        return scaled

    def output_size(self, size: Size) -> Size:
        if self.fit == "pad":
            assert self.width is not None and self.height is not None
            return self.width, self.height
        return self.resampled_size(size)


def _check_length(value: float | None) -> float | None:
    """A length is whole pixels (1 and more) or a fraction of the image's side (between 0 and 1)."""
    if value is not None and value >= 1 and not float(value).is_integer():
        raise ValueError("a length is whole pixels (1 or more) or a fraction of the side (between 0 and 1)")
    return value


Length = Annotated[float | None, Field(None, ge=0, le=MAX_DIMENSION), AfterValidator(_check_length)]
_ASPECT = re.compile(r"^\s*(\d{1,5})\s*:\s*(\d{1,5})\s*$")


class Crop(_Operation):
    """Cut out a box (`x`, `y`, `width`, `height`: pixels, or fractions of the side between 0 and 1)
    or the largest region of an aspect ratio (`aspect=16:9`); `gravity` places a box without x and
    y, and an aspect's region."""

    name: Literal["crop"] = "crop"
    x: Length = None
    y: Length = None
    width: Length = None
    height: Length = None
    aspect: str | None = Field(None, max_length=16)
    gravity: Gravity = "center"

    @field_validator("aspect")
    @classmethod
    def _ratio(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _ASPECT.match(value)
        if match is None or int(match[1]) == 0 or int(match[2]) == 0:
            raise ValueError(f"{value!r} is not an aspect ratio like 16:9")
        ratio = int(match[1]) / int(match[2])
        if not 1 / 100 <= ratio <= 100:
            raise ValueError(f"aspect {value} is more elongated than 100:1")
        return f"{int(match[1])}:{int(match[2])}"

    @model_validator(mode="after")
    def _box_or_aspect(self) -> "Crop":
        box = [self.x, self.y, self.width, self.height]
        if self.aspect is not None and any(value is not None for value in box):
            raise ValueError("give either a box (x, y, width, height) or an aspect, not both")
        if self.aspect is None and all(value is None for value in box):
            raise ValueError("give a box (x, y, width, height; a missing one is the rest of the image) or an aspect")
        for side in ("width", "height"):
            if getattr(self, side) == 0:
                raise ValueError(f"{side} must be more than 0")
        if (self.x is not None or self.y is not None) and self.gravity != "center":
            raise ValueError("gravity places a box that has no x and y; give one or the other")
        return self

    @property
    def ratio(self) -> float | None:
        if self.aspect is None:
            return None
        width, height = self.aspect.split(":")
        return int(width) / int(height)

    def region(self, size: Size) -> tuple[float, float]:
        """The width and height of what is kept of an image of `size` (before clipping to it), in
        whole pixels: where gravity places it, its size then does not depend on where it goes."""
        width, height = size
        if self.ratio is not None:
            if width / height > self.ratio:
                return max(1.0, round(height * self.ratio)), float(height)
            return float(width), max(1.0, round(width / self.ratio))
        x, y = _pixels(self.x, width) or 0, _pixels(self.y, height) or 0
        region_width = _pixels(self.width, width) or width - x
        region_height = _pixels(self.height, height) or height - y
        return max(1.0, round(region_width)), max(1.0, round(region_height))

    def fixed_box(self, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
        """The box in pixels when x or y places it; None when gravity does."""
        if self.x is None and self.y is None:
            return None
        x, y = _pixels(self.x, size[0]) or 0, _pixels(self.y, size[1]) or 0
        region_width, region_height = self.region(size)
        return x, y, x + region_width, y + region_height

    def outside(self, size: tuple[int, int]) -> str | None:
        """Why the box does not fit in an image of `size`, or None when it does."""
        box = self.fixed_box(size)
        if box is None or (round(box[2]) <= size[0] and round(box[3]) <= size[1]):
            return None
        shown = tuple(round(value) for value in box)
        return f"the crop box {shown} (left, top, right, bottom) reaches outside the {size[0]}×{size[1]} image"

    def output_size(self, size: Size) -> Size:
        """What is kept, clipped to the image (a box outside it is refused: see `outside`)."""
        box = self.fixed_box(size)
        if box is None:
            region_width, region_height = self.region(size)
            return min(size[0], int(region_width)), min(size[1], int(region_height))
        left, top, right, bottom = (round(value) for value in box)
        return min(size[0], right) - left, min(size[1], bottom) - top


def _pixels(length: float | None, side: int) -> float | None:
    """A Length in pixels: pixels as given, a fraction (between 0 and 1) of the side."""
    if length is None:
        return None
    return length * side if 0 < length < 1 else float(length)


class Rotate(_Operation):
    """Turn clockwise by `angle` degrees; quarter turns are exact, other angles enlarge the canvas,
    filled with `background`."""

    name: Literal["rotate"] = "rotate"
    angle: float = Field(90, ge=-360, le=360)
    background: Colour = "white"

    def output_size(self, size: Size) -> Size:
        angle = self.angle % 360
        if angle in (0, 180):
            return size
        if angle in (90, 270):
            return size[1], size[0]
        # As Image.rotate(expand=True) measures it (same rounding): the corners turned about the
        # centre, out to whole pixels.
        radians = math.radians(angle)
        cos, sin = round(math.cos(radians), 15), round(math.sin(radians), 15)
        width, height = size
        centre_x, centre_y = width / 2.0, height / 2.0
        offset_x = cos * -centre_x + sin * -centre_y + centre_x
        offset_y = -sin * -centre_x + cos * -centre_y + centre_y
        corners = ((0, 0), (width, 0), (width, height), (0, height))
        xs = [cos * x + sin * y + offset_x for x, y in corners]
        ys = [-sin * x + cos * y + offset_y for x, y in corners]
        return math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys))


class Flip(_Operation):
    """Mirror the image: `horizontal` (left and right swap), `vertical`, or `both`."""

    name: Literal["flip"] = "flip"
    direction: Literal["horizontal", "vertical", "both"] = "horizontal"


WatermarkPosition = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center", "tile"]


class Watermark(_Operation):
    """Draw text, or a logo preset (`image`), over the image; `size` is the text's or the logo's
    height as a fraction of the shorter side."""

    name: Literal["watermark"] = "watermark"
    text: str = Field("imgpipe", min_length=1, max_length=100)
    image: str | None = Field(None, pattern=PRESET_PATTERN)
    position: WatermarkPosition = "bottom-right"
    opacity: float = Field(0.5, gt=0, le=1)
    size: float = Field(0.05, ge=0.01, le=0.5)

    @model_validator(mode="after")
    def _text_or_image(self) -> "Watermark":
        # The default text travels with every dumped watermark: only another text is a conflict.
        if self.image is not None and self.text != type(self).model_fields["text"].default:
            raise ValueError("give either text or image, not both")
        return self

    @field_validator("text")
    @classmethod
    def _printable_without_mark_towers(cls, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        run = 0
        for char in text:
            if unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):
                raise ValueError(f"text contains the unprintable character U+{ord(char):04X}")
            run = run + 1 if unicodedata.combining(char) else 0
            if run > MAX_COMBINING_MARKS:
                raise ValueError(f"text stacks more than {MAX_COMBINING_MARKS} combining marks on one character")
        return text


FilterName = Literal[
    "grayscale", "blur", "sharpen", "sepia", "edge_enhance", "contour", "emboss", "invert"
]


class Filter(_Operation):
    """Apply one named filter; `radius` is for blur only (default 2)."""

    text_synonyms: ClassVar[dict[str, str]] = {"name": "type"}

    name: Literal["filter"] = "filter"
    filter: FilterName = Field("grayscale", alias="type")
    radius: float | None = Field(None, gt=0, le=100)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _radius_only_for_blur(self) -> "Filter":
        if self.radius is not None and self.filter != "blur":
            raise ValueError(f"radius applies to blur only, not {self.filter}")
        return self


MAX_FACTOR = 10.0


class Autocontrast(_Operation):
    """Stretch the tones to the full range, ignoring `cutoff` percent of the darkest and lightest pixels."""

    name: Literal["autocontrast"] = "autocontrast"
    cutoff: float = Field(0.0, ge=0, lt=50)


class Brightness(_Operation):
    """Multiply the brightness by `factor` (0: black, 1: unchanged)."""

    name: Literal["brightness"] = "brightness"
    factor: float = Field(ge=0, le=MAX_FACTOR)


class Contrast(_Operation):
    """Multiply the contrast by `factor` (0: flat grey, 1: unchanged)."""

    name: Literal["contrast"] = "contrast"
    factor: float = Field(ge=0, le=MAX_FACTOR)


class Saturation(_Operation):
    """Multiply the colour saturation by `factor` (0: greyscale, 1: unchanged)."""

    name: Literal["saturation"] = "saturation"
    factor: float = Field(ge=0, le=MAX_FACTOR)


class Pixelate(_Operation):
    """Blocks of `size`×`size` pixels, each one colour."""

    name: Literal["pixelate"] = "pixelate"
    size: int = Field(8, ge=2, le=512)


AnyOperation = (
    Resize | Watermark | Filter | Crop | Rotate | Flip | Autocontrast | Brightness | Contrast | Saturation | Pixelate
)
Operation = Annotated[AnyOperation, Field(discriminator="name")]
OPERATION_MODELS: dict[str, type[AnyOperation]] = {
    model.model_fields["name"].default: model
    for model in (
        Resize, Watermark, Filter, Crop, Rotate, Flip, Autocontrast, Brightness, Contrast, Saturation, Pixelate
    )
}


class OperationsError(ValueError):
    """A request's operations are malformed; the message names the problem and what is allowed."""


def describe_allowed() -> str:
    parts = []
    for name, model in OPERATION_MODELS.items():
        params = ", ".join(
            (field.alias or key) for key, field in model.model_fields.items() if key != "name"
        )
        parts.append(f"{name}({params})")
    return "; ".join(parts)


def parse_operations(spec: str, max_operations: int) -> list[AnyOperation]:
    """Parse the text grammar or a JSON array into validated operations, in order."""
    spec = spec.strip()
    if not spec:
        raise OperationsError("no operations given; allowed: " + describe_allowed())
    if len(spec) > MAX_SPEC_LENGTH:
        raise OperationsError(f"operations are {len(spec)} characters long; at most {MAX_SPEC_LENGTH} allowed")
    if spec.startswith("["):
        try:
            items = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise OperationsError(f"operations is not valid JSON: {exc.msg} at {exc.pos}") from exc
        except RecursionError:
            raise OperationsError("operations JSON is nested too deeply") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise OperationsError("a JSON operations list must be an array of objects")
        if any(isinstance(value, (dict, list)) for item in items for value in item.values()):
            raise OperationsError("operation parameters must be plain values (strings, numbers, booleans)")
    else:
        items = [_item_to_dict(item) for item in _split_top_level(spec, ",")]
    if not items:
        raise OperationsError("no operations given; allowed: " + describe_allowed())
    if len(items) > max_operations:
        raise OperationsError(f"{len(items)} operations given; at most {max_operations} allowed")
    return [_validate(index, item) for index, item in enumerate(items, start=1)]


def _validate(index: int, item: Mapping[str, object]) -> AnyOperation:
    name = item.get("name")
    model = OPERATION_MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        raise OperationsError(
            f"operation {index}: unknown operation {name!r}; allowed: "
            + ", ".join(sorted(OPERATION_MODELS))
        )
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        allowed = [(f.alias or k) for k, f in model.model_fields.items() if k != "name"]
        problems = "; ".join(_describe_error(err) for err in exc.errors())
        raise OperationsError(
            f"operation {index} ({name}): {problems}; parameters allowed: {', '.join(allowed)}"
        ) from exc


def _describe_error(err: ErrorDetails) -> str:
    where = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown parameter {where!r}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _item_to_dict(item: str) -> dict[str, str]:
    item = item.strip()
    if not item:
        raise OperationsError("empty operation in list (two commas in a row?)")
    if "(" not in item:
        return {"name": item}
    if not item.endswith(")"):
        raise OperationsError(f"operation {item!r}: missing closing parenthesis")
    name, _, body = item[:-1].partition("(")
    name = name.strip()
    model = OPERATION_MODELS.get(name)
    synonyms = model.text_synonyms if model else {}
    params: dict[str, str] = {"name": name}
    for pair in _split_top_level(body, ","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OperationsError(f"operation {name!r}: expected key=value, got {pair!r}")
        key = synonyms.get(key, key)
        if key == "name":
            raise OperationsError(f"operation {name!r}: 'name' is not one of its parameters")
        params[key] = _unquote(value.strip())
    return params


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on separator outside quotes and parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote:
        raise OperationsError(f"unterminated quote in {text!r}")
    if depth != 0:
        raise OperationsError(f"unbalanced parentheses in {text!r}")
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
