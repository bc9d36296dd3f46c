"""The processor registry: operation name → function(image, operation) → image."""

from collections.abc import Callable
from typing import Any, TypeVar

from PIL import Image

from common.operations import OPERATION_MODELS, Operation

Processor = Callable[[Image.Image, Any], Image.Image]
PROCESSORS: dict[str, Processor] = {}

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
