"""The benchmark's image set: one photo-like 4:3 JPEG (quality 90) per size, cached on disk.

The content comes from test_images/generate.py (`photo_like`), so the bench decodes what the load
tests decode; only the sizes are fixed here instead of drawn from a profile.
"""

from dataclasses import dataclass
from pathlib import Path

from test_images.generate import photo_like

QUALITY = 90
SEED = 6  # the number: any fixed seed gives the same files for a given Pillow


@dataclass(frozen=True)
class BenchImage:
    label: str  # the size in megapixels as the report names it: "0.3", "2", "12", "24"
    path: Path
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def read(self) -> bytes:
        return self.path.read_bytes()


def dimensions(megapixels: float) -> tuple[int, int]:
    """4:3, landscape, as close to `megapixels` as whole pixels allow."""
    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    return width, round(width * 3 / 4)


def bench_image(label: str, folder: Path) -> BenchImage:
    width, height = dimensions(float(label))
    path = folder / f"photo-{label}mp-{width}x{height}-q{QUALITY}.jpg"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        photo_like(width, height, SEED).save(partial, "JPEG", quality=QUALITY)
        partial.rename(path)
    return BenchImage(label, path, width, height)
