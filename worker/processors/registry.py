"""The processor registry: operation name → function(image, operation) → image.

Beside the processor, an operation may register how it fixes its choices on an animation's first
frame (smart gravity), so that every frame gets the same. How large its output is for an input
size (for the output limit, checked before it runs) the operation's model says
(common.operations)
"""

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from PIL import Image

from common.operations import OPERATION_MODELS, Operation

Size = tuple[int, int]
Processor = Callable[[Image.Image, Any], Image.Image]
Fixer = Callable[[Image.Image, Any], Any]
PROCESSORS: dict[str, Processor] = {}
FIXERS: dict[str, Fixer] = {}

_P = TypeVar("_P", bound=Processor)


NotApplicableReason = Literal["crop_outside_image", "unknown_logo"]


class NotApplicable(Exception):
    """The operation cannot be carried out on this image (a crop box outside it); `reason` is a
    short code, str() says why."""

    def __init__(self, reason: NotApplicableReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def processor(name: str, fix: Fixer | None = None) -> Callable[[_P], _P]:
    """Register the decorated function as the processor for the operation declared as `name`."""
    if name not in OPERATION_MODELS:
        raise ValueError(f"no operation {name!r} is declared in common.operations")

    def register(function: _P) -> _P:
        if name in PROCESSORS:
            raise ValueError(f"a processor for {name!r} is already registered")
        PROCESSORS[name] = function
        if fix is not None:
            FIXERS[name] = fix
        return function

    return register


def apply(image: Image.Image, operation: Operation) -> Image.Image:
    return PROCESSORS[operation.name](image, operation)


def output_size(size: Size, operation: Operation) -> Size:
    return operation.output_size(size)


def apply_to_frames(frames: list[Image.Image], operation: Operation) -> list[Image.Image]:
    """The operation on every frame of an animation (or the one of a still image). An operation
    that chooses something from the picture (smart gravity) chooses it on the first frame, so
    that every frame gets the same."""
    fix = FIXERS.get(operation.name)
    if fix is not None and len(frames) > 1:
        operation = fix(frames[0], operation)
    return [apply(frame, operation) for frame in frames]
