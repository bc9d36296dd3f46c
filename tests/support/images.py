"""Test images made on the fly, and ways to compare them."""

import itertools
import struct
import zlib
from io import BytesIO

from PIL import ExifTags, Image, ImageChops, ImageStat

from test_images.generate import photo_like


def make_photo(size: tuple[int, int] = (640, 480), mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Photo-like content from the project's one generator (never flat colours); in LA and RGBA
    modes the alpha is a vertical ramp."""
    photo = photo_like(*size, seed)
    if mode in ("LA", "RGBA"):
        photo = photo.convert(mode)
        photo.putalpha(Image.linear_gradient("L").resize(size))
    return photo.convert(mode)


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute difference per pixel and band, on 0..255."""
    bands = ImageStat.Stat(ImageChops.difference(first, second)).mean
    return sum(bands) / len(bands)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height (a decompression bomb); its pixel data is that of a 1×1 image."""
    buffer = BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, width, height)  # after signature, length and b"IHDR"
    struct.pack_into(">I", data, 29, zlib.crc32(data[12:29]))
    return bytes(data)


def png_of(size: tuple[int, int], mode: str = "RGB") -> bytes:
    """A photo-like PNG of the given size."""
    buffer = BytesIO()
    make_photo(size, mode).save(buffer, "PNG")
    return buffer.getvalue()


# Display P3 (Apple's primaries, adapted to D50 as ICC profiles store them), with a 2.2 gamma.
DISPLAY_P3_PRIMARIES = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))
D50 = (0.9642, 1.0, 0.8249)


def rgb_icc_profile(
    primaries: tuple[tuple[float, float, float], ...] = DISPLAY_P3_PRIMARIES, gamma: float = 2.2,
    description: str = "Display P3 (test)", padding: int = 0,
) -> bytes:
    """A matrix/TRC ICC v2 display profile, written byte by byte (no profile files are installed
    here); `padding` bytes of an unused tag make it as large as a test wants."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [
        (b"rXYZ", _xyz_tag(primaries[0])), (b"gXYZ", _xyz_tag(primaries[1])), (b"bXYZ", _xyz_tag(primaries[2])),
        (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
    ]
    if padding:
        tags.append((b"zpad", b"data\0\0\0\0" + bytes(padding)))
    return _icc_profile(b"mntrRGB XYZ ", description, tags)


# What each ink lets through of white's X, Y and Z.
INKS = {"c": (0.25, 0.45, 1.0), "m": (0.55, 0.2, 0.6), "y": (0.9, 0.85, 0.1), "k": (0.02, 0.02, 0.02)}


def cmyk_icc_profile(description: str = "CMYK inks (test)") -> bytes:
    """A CMYK printer profile whose A2B0 is a 2-point grid: each corner the XYZ of its inks."""
    grid = []
    for inks in itertools.product((0, 1), repeat=4):
        xyz = list(D50)
        for on, ink in zip(inks, "cmyk", strict=True):
            if on:
                xyz = [white * part for white, part in zip(xyz, INKS[ink], strict=True)]
        grid.append(xyz)
    lut = b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut += struct.pack(">HH", 2, 2) + struct.pack(">HH", 0, 65535) * 4
    lut += b"".join(struct.pack(">H", min(65535, round(value * 32768))) for xyz in grid for value in xyz)
    lut += struct.pack(">HH", 0, 65535) * 3
    return _icc_profile(b"prtrCMYKXYZ ", description, [(b"A2B0", lut)])


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(values: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(value) for value in values)


def _icc_profile(kind: bytes, description: str, tags: list[tuple[bytes, bytes]]) -> bytes:
    text = description.encode("ascii") + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    tags = [(b"desc", desc), (b"wtpt", _xyz_tag(D50)), (b"cprt", b"text\0\0\0\0no copyright\0"), *tags]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + kind
        + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0) + b"".join(_s15(v) for v in D50) + bytes(48)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


# What a camera or phone writes about its owner; none of it may reach a result unless asked for.
PRIVATE_STRINGS = (b"SN-SECRET-1234", b"Ann Example", b"SecretXmpCity", b"SecretComment", b"PhoneCo")
_XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="SecretXmpCity"/></rdf:RDF>'
    b'</x:xmpmeta><?xpacket end="w"?>'
)


def camera_jpeg(orientation: int = 1, size: tuple[int, int] = (160, 120)) -> bytes:
    """A camera-like JPEG: a GPS position, a serial number, maker, artist, copyright, XMP with a
    city, a comment; a red square in the stored top-left corner."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif[ExifTags.Base.Artist] = "Ann Example"
    exif[ExifTags.Base.Copyright] = "(c) Ann Example"
    exif[ExifTags.Base.Orientation] = orientation
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.BodySerialNumber] = "SN-SECRET-1234"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.2)
    photo = make_photo(size)
    photo.paste((255, 0, 0), (0, 0, size[0] // 8, size[1] // 6))
    buffer = BytesIO()
    photo.save(buffer, "JPEG", quality=95, exif=exif, xmp=_XMP, comment=b"SecretComment")
    return buffer.getvalue()


IPTC_CITY = b"\x1c\x02\x5a\x00\x0cSecretIptcCy"  # IPTC 2:90 City


def with_iptc(jpeg: bytes, record: bytes = IPTC_CITY) -> bytes:
    """The JPEG with an APP13 segment holding a thumbnail-like resource and the IPTC record."""
    other = b"8BIM\x04\x0c\x00\x00" + (4).to_bytes(4, "big") + b"THMB"
    resource = b"8BIM\x04\x04\x00\x00" + len(record).to_bytes(4, "big") + record + b"\x00" * (len(record) % 2)
    segment = b"Photoshop 3.0\x00" + other + resource
    return jpeg[:2] + b"\xff\xed" + (len(segment) + 2).to_bytes(2, "big") + segment + jpeg[2:]
