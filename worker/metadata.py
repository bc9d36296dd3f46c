"""Metadata: what of an image's EXIF and XMP goes to the output, by the job's `metadata` policy.

Stripped by default: EXIF (GPS positions, camera serial numbers, dates), XMP, IPTC and comments
never reach a result unless the job asks. The orientation is applied to the pixels before this
is read (worker/pipeline.py), and removed from what is kept.
"""

from dataclasses import dataclass

from PIL import ExifTags, Image

from common.formats import MAX_METADATA_BYTES

COPYRIGHT_TAGS = (ExifTags.Base.Artist, ExifTags.Base.Copyright)


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None
    xmp: bytes | None = None

    def save_options(self, format_: str) -> dict[str, bytes]:
        """The keyword arguments that write what is kept, for the formats whose writers take them."""
        options: dict[str, bytes] = {}
        if self.exif and format_ in ("jpeg", "png", "webp", "avif"):
            options["exif"] = self.exif
        if self.xmp and format_ in ("jpeg", "webp", "avif"):
            options["xmp"] = self.xmp
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
    xmp = image.info.get("xmp")
    xmp = xmp.encode() if isinstance(xmp, str) else xmp if isinstance(xmp, bytes) else None
    return Metadata(exif=_bounded(exif_bytes), xmp=_bounded(xmp))


def _bounded(data: bytes | None) -> bytes | None:
    return data if data and len(data) <= MAX_METADATA_BYTES else None
