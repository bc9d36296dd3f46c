"""Test images made on the fly, and ways to compare them."""

from PIL import Image, ImageChops, ImageStat


def make_photo(size: tuple[int, int] = (640, 480), mode: str = "RGB") -> Image.Image:
    """Photo-like content, gradients plus noise, never flat colours; alpha is a vertical ramp."""
    noise = Image.effect_noise(size, 40)
    bands = [
        Image.blend(gradient.resize(size), noise, 0.3)
        for gradient in (
            Image.linear_gradient("L").rotate(90),
            Image.linear_gradient("L"),
            Image.radial_gradient("L"),
        )
    ]
    photo = Image.merge("RGB", bands)
    if mode in ("LA", "RGBA"):
        photo = photo.convert(mode)
        photo.putalpha(Image.linear_gradient("L").resize(size))
    return photo.convert(mode)


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute difference per pixel and band, on 0..255."""
    bands = ImageStat.Stat(ImageChops.difference(first, second)).mean
    return sum(bands) / len(bands)
