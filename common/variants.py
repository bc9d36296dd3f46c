"""Variants: the named outputs one job makes from one original.

A job asks for one or more variants, each with its own operations, output format and quality; the
worker decodes the original once and makes every variant from it. A job given only `operations`
has one variant, named `default`, whose result keeps the job's original result key.

The API reads variants from the upload's `variants` field (a JSON object) or from a preset
(presets.yaml); both go through `parse_variants`, so both are checked the same way.
"""

import json
import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from common.formats import REQUESTABLE_FORMATS, RequestedFormat
from common.operations import Operation, OperationsError, parse_operations

DEFAULT_VARIANT = "default"
# Also what keeps a variant's name from ever being a path in a storage key or a URL.
VARIANT_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_VARIANTS_JSON_LENGTH = 200_000
# The most MAX_VARIANTS may be set to; also what a job message may carry.
MAX_VARIANTS_BOUND = 100
_VARIANT_FIELDS = ("operations", "output_format", "quality")


class VariantsError(ValueError):
    """The variants asked for are malformed; the message names the variant and the problem."""


class Variant(BaseModel):
    """One output a job makes: what the worker runs for it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=VARIANT_NAME_PATTERN.pattern)
    operations: list[Operation] = Field(min_length=1)
    output_format: RequestedFormat | None = None
    quality: int = Field(85, ge=1, le=100)


def default_variant(operations: list[Operation], output_format: str | None, quality: int) -> Variant:
    """What a job given only `operations` (and no variants) makes."""
    return Variant.model_validate(
        {"name": DEFAULT_VARIANT, "operations": operations, "output_format": output_format, "quality": quality}
    )


def is_variant_name(value: str) -> bool:
    return VARIANT_NAME_PATTERN.fullmatch(value) is not None


def parse_variants(
    spec: str | Mapping[str, object], max_variants: int, max_operations: int, default_quality: int
) -> list[Variant]:
    """A JSON object (text, or already parsed from YAML) of name -> {operations, output_format,
    quality}, checked: names, count, and each variant's fields with the operations grammar."""
    items = _load(spec) if isinstance(spec, str) else spec
    if not isinstance(items, Mapping):
        raise VariantsError('variants must be a JSON object of named outputs, e.g. {"thumb": {"operations": "resize"}}')
    if not items:
        raise VariantsError("no variants given")
    if len(items) > max_variants:
        raise VariantsError(f"{len(items)} variants given; at most {max_variants} allowed (MAX_VARIANTS)")
    return [
        _parse_variant(name, fields, max_operations, default_quality) for name, fields in items.items()
    ]


def _load(text: str) -> object:
    if len(text) > MAX_VARIANTS_JSON_LENGTH:
        raise VariantsError(f"variants is {len(text)} characters long; at most {MAX_VARIANTS_JSON_LENGTH} allowed")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VariantsError(f"variants is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise VariantsError("variants JSON is nested too deeply") from None


def _parse_variant(name: object, fields: object, max_operations: int, default_quality: int) -> Variant:
    if not isinstance(name, str) or not is_variant_name(name):
        shown = repr(name)[:40]
        raise VariantsError(
            f"variant name {shown} is not allowed: 1 to 32 characters, lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    if not isinstance(fields, Mapping):
        raise VariantsError(f"variant {name}: must be an object with operations, output_format and quality")
    unknown = sorted(str(key)[:40] for key in fields if key not in _VARIANT_FIELDS)
    if unknown:
        allowed = ", ".join(_VARIANT_FIELDS)
        raise VariantsError(f"variant {name}: unknown field(s) {', '.join(unknown)}; allowed: {allowed}")
    return Variant(
        name=name,
        operations=_operations(name, fields.get("operations"), max_operations),
        output_format=_output_format(name, fields.get("output_format")),
        quality=_quality(name, fields.get("quality"), default_quality),
    )


def _operations(name: str, value: object, max_operations: int) -> list[Operation]:
    if isinstance(value, list):
        value = json.dumps(value)
    if not isinstance(value, str):
        raise VariantsError(f"variant {name}: operations must be a string (or an array of operation objects)")
    try:
        return list(parse_operations(value, max_operations))
    except OperationsError as exc:
        raise VariantsError(f"variant {name}: operations: {exc}") from None


def _output_format(name: str, value: object) -> RequestedFormat | None:
    if value is None:
        return None
    normalised = value.strip().lower() if isinstance(value, str) else None
    normalised = "jpeg" if normalised == "jpg" else normalised
    for allowed in REQUESTABLE_FORMATS:
        if normalised == allowed:
            return allowed
    raise VariantsError(
        f"variant {name}: output_format {str(value)[:40]!r} is not supported; allowed: {', '.join(REQUESTABLE_FORMATS)}"
    )


def _quality(name: str, value: object, default_quality: int) -> int:
    if value is None:
        return default_quality
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise VariantsError(f"variant {name}: quality must be a whole number from 1 to 100")
    return value

