"""The corpus: files shaped like the ones people upload, each made here by a real encoder (libheif
with x265, libavif, libjpeg, libwebp, giflib-compatible Pillow, libpng), so the set carries no
third-party content and needs no licence beyond the project's own."""

from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO

from PIL import ExifTags, Image

from tests.support.images import camera_jpeg, cmyk_icc_profile, make_photo, rgb_icc_profile

RED, BLUE = (220, 30, 30), (30, 30, 220)


@dataclass(frozen=True)
class Expected:
    """What the pipeline must make of a corpus file."""

    size: tuple[int, int]
    mode: str
    format: str
    frames: int = 1
    durations: tuple[int, ...] = ()
    pixel: tuple[tuple[int, int], tuple[int, int, int]] | None = None  # a point and its colour (±16)
    alpha: bool = False


@dataclass(frozen=True)
class CorpusFile:
    name: str
    make: Callable[[], bytes]
    operations: str
    expected: Expected
    output_format: str | None = None
    notes: list[str] = field(default_factory=list)


def _encode(image: Image.Image, format_: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format_, **options)
    return buffer.getvalue()


def _gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.5)
    return exif


def phone_heic() -> bytes:
    photo = make_photo((1200, 900))
    photo.paste(RED, (0, 0, 150, 150))
    return _encode(photo, "HEIF", quality=80, exif=_gps_exif().tobytes())


def web_avif() -> bytes:
    photo = make_photo((1000, 750), "RGBA")
    photo.paste((*BLUE, 255), (850, 600, 1000, 750))
    return _encode(photo, "AVIF", quality=70, exif=_gps_exif().tobytes())


def camera_mpo() -> bytes:
    first, second = Image.new("RGB", (800, 600), RED), Image.new("RGB", (800, 600), BLUE)
    return _encode(first, "MPO", save_all=True, append_images=[second], quality=90)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (300, 200), (40 * index, 80, 200 - 30 * index)) for index in range(6)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[60, 70, 80, 90, 100, 110],
                   loop=0)


def animated_webp() -> bytes:
    frames = []
    for index in range(5):
        frame = Image.new("RGBA", (320, 240), (200, 40 * index, 60, 255))
        frame.paste((0, 0, 0, 0), (0, 0, 80, 240))
        frames.append(frame)
    return _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=120, loop=2, lossless=True,
                   kmin=1, kmax=1)


def cmyk_jpeg() -> bytes:
    return _encode(Image.new("CMYK", (400, 300), (0, 255, 255, 0)), "JPEG", quality=95, icc_profile=cmyk_icc_profile())


def display_p3_jpeg() -> bytes:
    return _encode(Image.new("RGB", (400, 300), (200, 50, 50)), "JPEG", quality=95, icc_profile=rgb_icc_profile())


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (512, 64))
    image.putdata([x * 128 for x in range(512)] * 64)
    return _encode(image, "PNG")


CORPUS = [
    CorpusFile("phone.heic", phone_heic, "resize(width=400)",
               Expected((400, 300), "RGB", "jpeg", pixel=((10, 10), RED))),
    CorpusFile("web.avif", web_avif, "resize(width=500)",
               Expected((500, 375), "RGBA", "avif", pixel=((480, 360), BLUE), alpha=True)),
    CorpusFile("camera.mpo", camera_mpo, "resize(width=200)",
               Expected((200, 150), "RGB", "jpeg", pixel=((100, 75), RED))),
    CorpusFile("animated.gif", animated_gif, "resize(width=150),watermark",
               Expected((150, 100), "RGB", "gif", frames=6, durations=(60, 70, 80, 90, 100, 110))),
    CorpusFile("animated.gif as avif", animated_gif, "resize(width=150)",
               Expected((150, 100), "RGB", "avif", frames=6, durations=(60, 70, 80, 90, 100, 110)),
               output_format="avif"),
    CorpusFile("animated.webp", animated_webp, "crop(aspect=1:1,gravity=west)",
               Expected((240, 240), "RGBA", "webp", frames=5, durations=(120,) * 5, alpha=True)),
    CorpusFile("cmyk.jpg", cmyk_jpeg, "resize(width=200)",
               # through the file's own profile: (255, 0, 72), where a plain conversion gives (255, 0, 0)
               Expected((200, 150), "RGB", "jpeg", pixel=((100, 75), (255, 0, 72)))),
    CorpusFile("display-p3.jpg", display_p3_jpeg, "resize(width=200)",
               # the P3 red in sRGB, more saturated than the stored (200, 50, 50)
               Expected((200, 150), "RGB", "png", pixel=((100, 75), (219, 14, 35))), output_format="png"),
    CorpusFile("sixteen-bit.png", sixteen_bit_png, "resize(width=256)", Expected((256, 32), "L", "png")),
    CorpusFile("gps.jpg", lambda: camera_jpeg(orientation=6, size=(800, 600)), "resize(width=300)",
               Expected((300, 400), "RGB", "jpeg", pixel=((290, 10), (255, 0, 0)))),
]
