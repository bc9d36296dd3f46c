"""Realistic, varied test images for load tests, deterministic from a seed.

    python test_images/generate.py --count 80 --profile medium --seed 1     # prints the folder

Photo-like content (smooth colour fields, blurred shapes, fine grain), not flat colour: decoding
and resampling cost depends on content. A set mixes JPEG, PNG and WebP; some images carry an EXIF
orientation (the worker must rotate them), some PNG/WebP have an alpha channel.

Everything is drawn with Pillow's C operations at reduced size and upsampled, so a 24 MP image
takes about a second. Sets are cached under `results/images/<seed>-<profile>-<count>/` with a
`manifest.json`; the same seed and profile give the same files (for a given Pillow version).
"""

import argparse
import hashlib
import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

PROJECT_DIR = Path(__file__).resolve().parents[1]
CACHE_DIR = PROJECT_DIR / "results" / "images"

# Megapixel ranges; sizes are drawn log-uniformly inside them.
PROFILES: dict[str, tuple[float, float]] = {
    "tiny": (0.05, 0.3),
    "small": (0.3, 2.0),
    "medium": (2.0, 12.0),
    "large": (12.0, 24.0),
    "mixed": (0.3, 24.0),
}
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3)
# Encoded PNGs of photo-like content are big (~3 bytes/pixel): keep them under the 25 MiB upload limit.
PNG_MAX_MEGAPIXELS = 6.0
MAX_BYTES = 24 * 1024 * 1024
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageSpec:
    name: str
    width: int
    height: int
    format: str  # JPEG | PNG | WEBP
    alpha: bool
    orientation: int | None  # EXIF orientation (3, 6 or 8), None for none
    seed: int


@dataclass(frozen=True)
class GeneratedImage:
    name: str
    width: int
    height: int
    format: str
    alpha: bool
    orientation: int | None
    bytes: int
    sha256: str


def plan(count: int, seed: int, profile: str) -> list[ImageSpec]:
    """What a set contains: sizes, formats, alpha and orientation, drawn from `seed`."""
    low, high = PROFILES[profile]
    rng = random.Random(f"{seed}-{profile}")
    specs = []
    for index in range(count):
        megapixels = low * (high / low) ** rng.random()
        aspect = rng.choice(ASPECTS)
        width = max(16, round((megapixels * 1e6 * aspect) ** 0.5))
        height = max(16, round(width / aspect))
        roll = rng.random()
        if roll < 0.2:
            image_format = "PNG" if megapixels <= PNG_MAX_MEGAPIXELS else "JPEG"
        elif roll < 0.4:
            image_format = "WEBP"
        else:
            image_format = "JPEG"
        alpha = image_format != "JPEG" and rng.random() < 0.5
        orientation = rng.choice((3, 6, 8)) if rng.random() < 0.25 else None
        extension = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[image_format]
        specs.append(
            ImageSpec(
                name=f"img-{index:04d}-{width}x{height}.{extension}",
                width=width,
                height=height,
                format=image_format,
                alpha=alpha,
                orientation=orientation,
                seed=rng.getrandbits(32),
            )
        )
    return specs


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour field + blurred shapes + grain: compresses and decodes like a photograph."""
    rng = random.Random(seed)
    small = (max(4, width // 8), max(4, height // 8))
    field = Image.frombytes("RGB", (6, 5), rng.randbytes(6 * 5 * 3)).resize(small, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(rng.randrange(20, 60)):
        x, y = rng.randrange(small[0]), rng.randrange(small[1])
        r = rng.randrange(max(2, small[0] // 60), max(3, small[0] // 6))
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            points = [(x + rng.randrange(-r, r + 1), y + rng.randrange(-r, r + 1)) for _ in range(5)]
            draw.polygon(points, fill=colour)
    half = (max(1, width // 2), max(1, height // 2))
    field = field.filter(ImageFilter.GaussianBlur(1.5)).resize(half, Image.Resampling.BICUBIC)
    # Sharp edges (branches, window frames): high-frequency detail that costs encoders and resamplers.
    draw = ImageDraw.Draw(field)
    for _ in range(rng.randrange(10, 30)):
        start = (rng.randrange(half[0]), rng.randrange(half[1]))
        end = (
            start[0] + rng.randrange(-half[0] // 3, half[0] // 3),
            start[1] + rng.randrange(-half[1] // 3, half[1] // 3),
        )
        draw.line((start, end), fill=tuple(rng.randrange(256) for _ in range(3)), width=rng.randrange(1, 6))
    field = field.resize((width, height), Image.Resampling.BICUBIC)
    # Mid-frequency texture (upsampled) and fine grain at full resolution.
    texture = Image.frombytes("L", half, rng.randbytes(half[0] * half[1])).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    noise = Image.blend(texture, grain, 0.5).convert("RGB")
    return Image.blend(field, noise, 0.12)


def render(spec: ImageSpec) -> bytes:
    image = photo_like(spec.width, spec.height, spec.seed)
    if spec.alpha:
        # An opaque subject on a soft, partly transparent background.
        mask = Image.new("L", (spec.width, spec.height), 70)
        inset_x, inset_y = spec.width // 6, spec.height // 6
        ImageDraw.Draw(mask).ellipse(
            (inset_x, inset_y, spec.width - inset_x, spec.height - inset_y), fill=255
        )
        image.putalpha(mask)
    options: dict = {}
    if spec.orientation:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = spec.orientation
        options["exif"] = exif
    if spec.format == "JPEG":
        options.update(quality=88)
    elif spec.format == "WEBP":
        options.update(quality=85, method=0)
    else:
        options.update(compress_level=1)
    buffer = io.BytesIO()
    image.save(buffer, format=spec.format, **options)
    data = buffer.getvalue()
    if len(data) > MAX_BYTES:
        raise ValueError(f"{spec.name}: {len(data)} bytes is over the upload limit")
    return data


def set_dir(seed: int, profile: str, count: int, cache_dir: Path = CACHE_DIR) -> Path:
    return cache_dir / f"{seed}-{profile}-{count}"


def generate(
    count: int, seed: int = 1, profile: str = "medium", out_dir: Path | None = None, progress: bool = False
) -> Path:
    """Writes the set (or reuses a complete cached one) and returns its folder."""
    out_dir = out_dir or set_dir(seed, profile, count)
    manifest_path = out_dir / "manifest.json"
    specs = plan(count, seed, profile)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if [item["name"] for item in manifest["images"]] == [s.name for s in specs] and all(
            (out_dir / s.name).exists() for s in specs
        ):
            return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, spec in enumerate(specs, 1):
        data = render(spec)
        (out_dir / spec.name).write_bytes(data)
        fields = {k: v for k, v in asdict(spec).items() if k != "seed"}
        written.append(GeneratedImage(**fields, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
        if progress:
            print(f"  {index}/{count} {spec.name} ({len(data) / 1e6:.1f} MB)", flush=True)
    manifest_path.write_text(
        json.dumps(
            {"seed": seed, "profile": profile, "count": count, "images": [asdict(w) for w in written]},
            indent=1,
        )
    )
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="medium")
    parser.add_argument("--out", type=Path, help="folder (default: the cache under results/images/)")
    args = parser.parse_args()
    print(generate(args.count, args.seed, args.profile, args.out, progress=True))


if __name__ == "__main__":
    main()
