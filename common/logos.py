"""Logo presets for image watermarks: PNG files in one folder, each named after its preset
(`watermark(image=imgpipe)` is `imgpipe.png`). The folder is WATERMARK_DIR, else the one shipped in
common/logos/. Only names are ever taken from a request, never paths or URLs."""

import re
from pathlib import Path

SHIPPED_DIR = Path(__file__).parent / "logos"
PRESET_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_PRESET = re.compile(PRESET_PATTERN)
# A logo is drawn at most this large; a larger file in the folder is refused when used.
MAX_LOGO_BYTES = 4 * 1024 * 1024
MAX_LOGO_PIXELS = 4_000_000


def logo_dir(configured: Path | None) -> Path:
    return configured if configured is not None else SHIPPED_DIR


def preset_names(directory: Path) -> frozenset[str]:
    """The presets in `directory`: regular `<name>.png` files whose name is a preset name."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return frozenset()
    return frozenset(
        entry.stem for entry in entries
        if entry.suffix == ".png" and _PRESET.match(entry.stem) and entry.is_file() and not entry.is_symlink()
    )


def logo_path(directory: Path, name: str) -> Path | None:
    """The file of preset `name`, if there is one."""
    if not _PRESET.match(name):
        return None
    path = directory / f"{name}.png"
    return path if path.is_file() and not path.is_symlink() else None
