"""The benchmark's image set: photo-like JPEGs (quality 90) per size in several aspect ratios, cached on disk.

Every size is measured on one image per aspect: landscape 4:3, 3:2 and 16:9, portrait 2:3, and an "odd"
one (7:5, both sides odd, so neither is a multiple of the 8-pixel JPEG block). A decoder or resampler
that does well only on one shape (draft decoding that picked 1/2 instead of 1/4 for 3:2 photos) shows
in the per-aspect figures. The content comes from test_images/generate.py (`photo_like`), so the bench
decodes what the load tests decode; only the sizes are fixed here instead of drawn from a profile.
"""

from dataclasses import dataclass
from pathlib import Path

from test_images.generate import photo_like

QUALITY = 90
SEED = 6  # the number: any fixed seed gives the same files for a given Pillow

# Aspect name → width / height. "odd" is 7:5 with both sides rounded to odd numbers.
ASPECTS: dict[str, float] = {"4:3": 4 / 3, "3:2": 3 / 2, "16:9": 16 / 9, "2:3": 2 / 3, "odd": 7 / 5}
DEFAULT_ASPECT = "4:3"


@dataclass(frozen=True)
class BenchImage:
    label: str  # the size in megapixels as the report names it: "0.3", "2", "12", "24"
    path: Path
    width: int
    height: int
    aspect: str = DEFAULT_ASPECT

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def read(self) -> bytes:
        return self.path.read_bytes()


def dimensions(megapixels: float, aspect: str = DEFAULT_ASPECT) -> tuple[int, int]:
    """`aspect` (a key of ASPECTS), as close to `megapixels` as whole pixels allow."""
    ratio = ASPECTS[aspect]
    width = round((megapixels * 1e6 * ratio) ** 0.5)
    height = round(width / ratio)
    if aspect == "odd":
        width, height = width | 1, height | 1
    return width, height


def sized_image(width: int, height: int, folder: Path, label: str, aspect: str) -> BenchImage:
    """A photo-like JPEG of exactly `width`×`height`, generated once and cached in `folder`."""
    path = folder / f"photo-{width}x{height}-q{QUALITY}.jpg"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        photo_like(width, height, SEED).save(partial, "JPEG", quality=QUALITY)
        partial.rename(path)
    return BenchImage(label, path, width, height, aspect)


def bench_image(label: str, folder: Path, aspect: str = DEFAULT_ASPECT) -> BenchImage:
    width, height = dimensions(float(label), aspect)
    return sized_image(width, height, folder, label, aspect)


def bench_images(label: str, folder: Path) -> list[BenchImage]:
    """One image of `label` megapixels per aspect of ASPECTS, in that order."""
    return [bench_image(label, folder, aspect) for aspect in ASPECTS]


def long_side_images(long_side: int, folder: Path) -> list[BenchImage]:
    """One image per aspect of ASPECTS whose longer side is `long_side` (2048: imgproxy's "2K photos")."""
    images = []
    for aspect, ratio in ASPECTS.items():
        short = round(long_side / max(ratio, 1 / ratio))
        if aspect == "odd":
            short |= 1
        width, height = (long_side - (aspect == "odd"), short) if ratio >= 1 else (short, long_side)
        images.append(sized_image(width, height, folder, f"{width * height / 1e6:.1f}", aspect))
    return images
