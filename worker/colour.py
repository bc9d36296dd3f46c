"""Colour: pixels in an embedded ICC profile's space brought to sRGB, so results look the same in
every browser (one that ignores profiles, too)."""

import hashlib
import logging
import threading
from collections import OrderedDict
from io import BytesIO

from PIL import Image, ImageCms

logger = logging.getLogger(__name__)

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_CONVERTIBLE = {"RGB": b"RGB ", "RGBA": b"RGB "}
# Built transforms, by profile digest and mode: a transform costs a few ms to build, and most
# uploads carry one of a handful of profiles (sRGB, Display P3, Adobe RGB).
_TRANSFORM_CACHE_SIZE = 16
_transforms: OrderedDict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] = OrderedDict()
_lock = threading.Lock()


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """`image` (L, LA, RGB or RGBA) with pixels in sRGB. An RGB image is converted through its
    profile; a greyscale one has no colour to shift and stays as it is. A profile that cannot be
    read, or one that is not for RGB, leaves the pixels unchanged: they are then taken as sRGB."""
    if not icc or image.mode not in _CONVERTIBLE or icc[16:20] != _CONVERTIBLE[image.mode]:
        return image
    transform = _transform(icc, image.mode)
    return image if transform is None else transform.apply(image)


def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    key = (hashlib.sha256(icc).digest(), mode)
    with _lock:
        if key in _transforms:
            _transforms.move_to_end(key)
            return _transforms[key]
    transform = _build(icc, mode)
    with _lock:
        _transforms[key] = transform
        while len(_transforms) > _TRANSFORM_CACHE_SIZE:
            _transforms.popitem(last=False)
    return transform


def _build(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        source = ImageCms.ImageCmsProfile(BytesIO(icc))
        if "sRGB" in (ImageCms.getProfileDescription(source) or ""):
            return None  # already sRGB: converting would only cost time
        return ImageCms.buildTransform(source, _SRGB, mode, mode, ImageCms.Intent.PERCEPTUAL)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        logger.info("embedded ICC profile not usable, pixels taken as sRGB: %s", exc)
        return None
