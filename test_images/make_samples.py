"""Writes the committed sample images (deterministic): `python -m test_images.make_samples`.

- sample.jpg      1600×1200 photo-like JPEG (gradients, shapes and noise: not flat colour)
- sample.png      800×600 RGBA PNG with a transparent background
- corrupted.jpg   a real JPEG header and the start of its data, then cut off: the API accepts it
                  (the header is valid), the worker cannot decode it and the job fails
"""

import io
from pathlib import Path

from PIL import Image, ImageDraw

from test_images.generate import photo_like

HERE = Path(__file__).resolve().parent


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
