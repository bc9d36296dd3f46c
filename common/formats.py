"""The image formats the system takes in and gives out: one list, read by the API and the worker.

Pillow is only ever asked to open these formats (`Image.open(..., formats=PILLOW_FORMATS)`), so the
plugins of every other format it knows (DDS, FTEX, ...) never see an uploaded byte. HEIF is read by
pillow-heif's plugin, registered by common.imaging; AVIF by Pillow's own.
"""

from typing import Literal, get_args

# Pillow's format name → the name the API and job records use. Pillow names a JPEG that carries
# extra pictures (what many cameras and phones write) MPO; its first picture is an ordinary JPEG.
# Of a file holding several pictures, the first is taken (a TIFF's first page, a HEIF's primary
# image), except an animation (ANIMATED_FORMATS), whose frames are all read.
INPUT_FORMATS: dict[str, str] = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
    "AVIF": "avif",
    "HEIF": "heic",
}
# What Image.open may try. MPO has no opener of its own: JPEG's recognises it.
PILLOW_FORMATS: tuple[str, ...] = tuple(name for name in INPUT_FORMATS if name != "MPO")
ACCEPTED_NAMES: tuple[str, ...] = tuple(sorted(set(INPUT_FORMATS.values())))

OutputFormat = Literal["jpeg", "png", "webp", "avif", "gif"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
# What a job may ask for: an output format, or `auto` (AVIF for a still result, WebP for an
# animated one; both keep alpha).
RequestedFormat = Literal["jpeg", "png", "webp", "avif", "gif", "auto"]
REQUESTABLE_FORMATS: tuple[RequestedFormat, ...] = get_args(RequestedFormat)
# Outputs that carry an animation; every other one takes an animation's first frame. An animated
# AVIF always loops forever: Pillow's AVIF writer has no loop count.
ANIMATED_OUTPUTS: frozenset[str] = frozenset({"gif", "webp", "avif"})
# Inputs whose frames are an animation (not a camera's second picture or a document's pages).
ANIMATED_INPUTS: frozenset[str] = frozenset({"GIF", "WEBP", "PNG", "AVIF"})
CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "heic": "image/heic",
}
# An input in one of these formats is written back in it unless another is asked for.
KEPT_FORMATS: frozenset[str] = frozenset(OUTPUT_FORMATS)

# max_bytes, a job's byte budget for its result: below the lower bound no image fits anyway.
MIN_MAX_BYTES = 512
MAX_MAX_BYTES = 1 << 30

# ICC profiles above this are dropped, not copied: real ones are a few hundred KB at most.
MAX_ICC_PROFILE_BYTES = 1024 * 1024
# EXIF, XMP, IPTC or a comment kept on request above this is dropped: it fits one JPEG segment
# (65,533 bytes, less XMP's 29-byte name, the most any of them needs).
MAX_METADATA_BYTES = 65_504

# srgb: pixels converted from their embedded profile to sRGB, written untagged; keep: the profile
# goes with the pixels (when it still describes them).
ColorPolicy = Literal["srgb", "keep"]
COLOR_POLICIES: tuple[str, ...] = ("srgb", "keep")
# strip: no EXIF, XMP, IPTC or comments; keep: EXIF, XMP, IPTC and the comment, where the output
# format has a place for them (worker/metadata.py; orientation applied and removed); copyright:
# only EXIF's Artist and Copyright.
MetadataPolicy = Literal["strip", "keep", "copyright"]
METADATA_POLICIES: tuple[str, ...] = ("strip", "keep", "copyright")


def output_format(name: str) -> OutputFormat | None:
    """The output format `name` (lower case) names, "jpg" being JPEG's other name; None if it names none."""
    name = "jpeg" if name == "jpg" else name
    return next((format_ for format_ in OUTPUT_FORMATS if format_ == name), None)


def accepted_list() -> str:
    return ", ".join(ACCEPTED_NAMES)
