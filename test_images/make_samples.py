"""Writes the committed sample images (deterministic): `python test_images/make_samples.py`.

- sample.jpg      1600×1200 photo-like JPEG (gradients, shapes and noise: not flat colour)
- sample.png      800×600 RGBA PNG with a transparent background
- corrupted.jpg   a real JPEG header and the start of its data, then cut off: the API accepts it
                  (the header is valid), the worker cannot decode it and the job fails
"""

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    sky = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (sky.point(lambda v: 90 + v // 3), sky.point(lambda v: 140 + v // 4), sky.point(lambda v: 230 - v // 5)))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height // 3, height)
        r = rng.randrange(width // 40, width // 6)
        colour = (rng.randrange(30, 200), rng.randrange(60, 200), rng.randrange(20, 120))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((width, height), 24).convert("RGB")
    return Image.blend(image, noise, 0.12)


def main() -> None:
    photo = photo_like(1600, 1200, seed=7)
    photo.save(HERE / "sample.jpg", quality=85)

    logo = Image.new("RGBA", (800, 600), (0, 0, 0, 0))
    ImageDraw.Draw(logo).ellipse((100, 50, 700, 550), fill=(200, 40, 60, 255))
    logo.save(HERE / "sample.png")

    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=85)
    data = buffer.getvalue()
    (HERE / "corrupted.jpg").write_bytes(data[: len(data) // 5])


if __name__ == "__main__":
    main()
