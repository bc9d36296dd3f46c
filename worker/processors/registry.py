"""The processor registry: operation name → function(image, operation) → image."""

from collections.abc import Callable
from typing import Any, TypeVar

from PIL import Image

from common.operations import OPERATION_MODELS, Operation

Processor = Callable[[Image.Image, Any], Image.Image]
PROCESSORS: dict[str, Processor] = {}
# operation name → function(first frame, operation) → the operation with its choices made.
FIXERS: dict[str, Callable[[Image.Image, Any], Any]] = {}

_P = TypeVar("_P", bound=Processor)


def processor(name: str) -> Callable[[_P], _P]:
    """Register the decorated function as the processor for the operation declared as `name`."""
    if name not in OPERATION_MODELS:
        raise ValueError(f"no operation {name!r} is declared in common.operations")

    def register(function: _P) -> _P:
        if name in PROCESSORS:
            raise ValueError(f"a processor for {name!r} is already registered")
        PROCESSORS[name] = function
        return function

    return register


def apply(image: Image.Image, operation: Operation) -> Image.Image:
    return PROCESSORS[operation.name](image, operation)


def apply_to_frames(frames: list[Image.Image], operation: Operation) -> list[Image.Image]:
    """The operation on every frame of an animation (or the one of a still image). An operation
    that chooses something from the picture (smart gravity) chooses it on the first frame, so
    that every frame gets the same."""
    fix = FIXERS.get(operation.name)
    if fix is not None and len(frames) > 1:
        operation = fix(frames[0], operation)
    return [apply(frame, operation) for frame in frames]
