"""Metadata: what of an image's EXIF, XMP, IPTC and comment goes to the output, by the job's
`metadata` policy.

Stripped by default: EXIF (GPS positions, camera serial numbers, dates), XMP, IPTC and comments
never reach a result unless the job asks. The orientation is applied to the pixels before this
is read (worker/pipeline.py), and removed from what is kept.

Where each kept piece can go (what Pillow writes): EXIF in JPEG, PNG, WebP and AVIF; XMP in JPEG,
WebP and AVIF; the comment in JPEG (COM), PNG (a `Comment` text chunk) and GIF (a comment
extension); IPTC only in JPEG, as a Photoshop APP13 segment holding the IPTC record alone. WebP and
AVIF have no place for IPTC or a comment, PNG none for IPTC (IPTC Core's fields travel in XMP).
"""

from dataclasses import dataclass

from PIL import ExifTags, Image, PngImagePlugin

from common.formats import MAX_METADATA_BYTES

COPYRIGHT_TAGS = (ExifTags.Base.Artist, ExifTags.Base.Copyright)
# Photoshop's image resource that holds the IPTC-NAA record (JPEG APP13), and TIFF's IPTC tag.
IPTC_RESOURCE = 0x0404
IPTC_TIFF_TAG = 33723


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None
    xmp: bytes | None = None
    iptc: bytes | None = None
    comment: bytes | None = None

    def save_options(self, format_: str) -> dict[str, object]:
        """The keyword arguments that write what is kept, for the formats whose writers take them."""
        options: dict[str, object] = {}
        if self.exif and format_ in ("jpeg", "png", "webp", "avif"):
            options["exif"] = self.exif
        if self.xmp and format_ in ("jpeg", "webp", "avif"):
            options["xmp"] = self.xmp
        if self.comment and format_ in ("jpeg", "gif"):
            options["comment"] = self.comment
        if self.comment and format_ == "png":
            text = PngImagePlugin.PngInfo()
            text.add_text("Comment", self.comment.decode("utf-8", "replace"))
            options["pnginfo"] = text
        if self.iptc and format_ == "jpeg":
            # Pillow's raw-marker option (its own XMP and ICC segments go the same way).
            options["extra"] = _app13(self.iptc)
        return options


NONE = Metadata()


def kept_metadata(image: Image.Image, policy: str) -> Metadata:
    """What `policy` keeps of a decoded (and already oriented) image's metadata."""
    if policy == "strip":
        return NONE
    exif = image.getexif()
    exif.pop(ExifTags.Base.Orientation, None)
    if policy == "copyright":
        kept = Image.Exif()
        for tag in COPYRIGHT_TAGS:
            if isinstance(exif.get(tag), str):
                kept[tag] = exif[tag]
        return Metadata(exif=kept.tobytes() if len(kept) else None)
    exif_bytes = exif.tobytes() if len(exif) or exif.get_ifd(ExifTags.IFD.Exif) else None
    return Metadata(
        exif=_bounded(exif_bytes),
        xmp=_bounded(_as_bytes(image.info.get("xmp"))),
        iptc=_bounded(_iptc(image)),
        comment=_bounded(_as_bytes(image.info.get("comment") or image.info.get("Comment"))),
    )


def _iptc(image: Image.Image) -> bytes | None:
    """The IPTC record: a JPEG's Photoshop resource, or a TIFF's IPTC tag."""
    photoshop = image.info.get("photoshop")
    if isinstance(photoshop, dict):
        return _as_bytes(photoshop.get(IPTC_RESOURCE))
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        value = tags.get(IPTC_TIFF_TAG)
        if isinstance(value, tuple) and all(isinstance(item, int) and 0 <= item < 256 for item in value):
            return bytes(value)
        return _as_bytes(value)
    return None


def _app13(iptc: bytes) -> bytes:
    """A JPEG APP13 segment: Photoshop's header and one image resource, the IPTC record (padded to
    an even length, as resources are)."""
    padded = iptc + b"\x00" * (len(iptc) % 2)
    resource = b"8BIM" + IPTC_RESOURCE.to_bytes(2, "big") + b"\x00\x00" + len(iptc).to_bytes(4, "big") + padded
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, str):
        return value.encode()
    return value if isinstance(value, bytes) else None


def _bounded(data: bytes | None) -> bytes | None:
    return data if data and len(data) <= MAX_METADATA_BYTES else None
