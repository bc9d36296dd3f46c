"""What an animation costs as WebP (what `auto` writes) and as AVIF: CPU milliseconds and bytes out of
the pipeline, for a photo-like animation and a flat, GIF-like one.

    python -m bench.animations                      # 24 frames of 480×360, 3 rounds
    python -m bench.animations --frames 8 --size 160x120 --rounds 1

Both are made as GIFs (what people upload), every frame different; quality 85, no operation. CPU
time (time.process_time) of the best round, so a busy machine shows less than in wall time.
"""

import argparse
import time
from io import BytesIO

from PIL import Image, ImageDraw

from bench.images import SEED
from test_images.generate import photo_like

QUALITY = 85
MAX_PIXELS = 100_000_000
FORMATS = ("webp", "avif")


def photo_animation(size: tuple[int, int], frames: int) -> bytes:
    """A photo turning a little more each frame."""
    base = photo_like(*size, SEED).convert("RGB")
    return _gif([base.rotate(index * 3, fillcolor="white") for index in range(frames)])


def flat_animation(size: tuple[int, int], frames: int) -> bytes:
    """A red disc moving over a flat background, with a caption: what most GIFs look like."""
    images = []
    for index in range(frames):
        image = Image.new("RGB", size, (240, 240, 240))
        draw = ImageDraw.Draw(image)
        step = size[0] // (frames + 4)
        draw.ellipse((index * step, size[1] // 4, index * step + size[1] // 4, size[1] // 2), fill=(200, 30, 30))
        draw.text((10, 10), f"frame {index}", fill=(0, 0, 0))
        images.append(image.quantize(64))
    return _gif(images)


def _gif(frames: list[Image.Image]) -> bytes:
    buffer = BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def measure(source: bytes, rounds: int) -> dict[str, dict[str, float]]:
    from common.imaging import guard_decompression
    from worker.pipeline import process_image

    guard_decompression(MAX_PIXELS)
    figures: dict[str, dict[str, float]] = {}
    for format_ in FORMATS:
        best, size = float("inf"), 0
        for _ in range(rounds):
            started = time.process_time()
            result = process_image(source, [], format_, QUALITY, MAX_PIXELS)
            best, size = min(best, time.process_time() - started), len(result.data)
        figures[format_] = {"cpu_ms": round(best * 1000, 1), "bytes": size}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="480x360")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    print(f"{'animation':>10} {'format':>6} {'cpu ms':>8} {'bytes':>10}")
    for label, make in (("photo", photo_animation), ("flat", flat_animation)):
        for format_, figure in measure(make((width, height), args.frames), args.rounds).items():
            print(f"{label:>10} {format_:>6} {figure['cpu_ms']:>8} {figure['bytes']:>10,}")


if __name__ == "__main__":
    main()
