"""Presets: the operator's named sets of variants, read from PRESETS_FILE when the API starts.

The file is YAML (read with safe_load: no tags, no objects), a mapping of preset names to variants
in the upload's `variants` shape:

    avatar:
      small: {operations: "resize(width=64,height=64,fit=cover)", output_format: webp}

Every preset is checked as an upload's variants are (names, count, operations, enlargements,
logos); one bad preset stops the API with a message naming it, so a typo never waits for the first
upload that uses it.
"""

import logging
from pathlib import Path

import yaml

from api.errors import InvalidInput
from api.service import check_variant
from common.settings import UploadLimits
from common.variants import Variant, VariantsError, is_variant_name, parse_variants

logger = logging.getLogger("api")

MAX_PRESETS_FILE_BYTES = 1024 * 1024

Presets = dict[str, list[Variant]]


class PresetsError(ValueError):
    """PRESETS_FILE cannot be used; the message names the file, the preset and the problem."""


def load_presets(path: Path | None, limits: UploadLimits) -> Presets:
    """The presets in `path`, every one checked (None: no presets)."""
    if path is None:
        return {}
    try:
        if path.stat().st_size > MAX_PRESETS_FILE_BYTES:
            raise PresetsError(f"PRESETS_FILE {path}: larger than {MAX_PRESETS_FILE_BYTES} bytes")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PresetsError(f"PRESETS_FILE {path} cannot be read: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PresetsError(f"PRESETS_FILE {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PresetsError(f"PRESETS_FILE {path}: must be a mapping of preset names to their variants")
    presets = {}
    for name, variants in loaded.items():
        if not isinstance(name, str) or not is_variant_name(name):
            raise PresetsError(
                f"PRESETS_FILE {path}: preset name {str(name)[:40]!r} is not allowed: 1 to 32 characters, "
                "lower-case letters, digits, '-' and '_', starting with a letter or digit"
            )
        presets[name] = _checked(path, name, variants, limits)
    logger.info("presets from %s: %s", path, ", ".join(presets) or "none")
    return presets


def _checked(path: Path, name: str, variants: object, limits: UploadLimits) -> list[Variant]:
    if not isinstance(variants, dict):
        raise PresetsError(f"PRESETS_FILE {path}: preset {name}: must be a mapping of variant names to variants")
    try:
        parsed = parse_variants(variants, limits.max_variants, limits.max_operations, limits.default_quality)
        for variant in parsed:
            check_variant(variant, limits)
    except VariantsError as exc:
        raise PresetsError(f"PRESETS_FILE {path}: preset {name}: {exc}") from None
    except InvalidInput as exc:
        raise PresetsError(f"PRESETS_FILE {path}: preset {name}: variant {variant.name}: {exc.detail}") from None
    return parsed
