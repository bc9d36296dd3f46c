"""Where a region goes inside an image: by gravity (a side, a corner, the centre) or `smart`, the
region with the most detail (edges and colour saturation on a small copy, weighted towards the
centre, as libvips' "attention" and imgproxy's smart crop do)."""

import math

from PIL import Image, ImageFilter

Size = tuple[int, int]
Box = tuple[float, float, float, float]

# The analysis runs on a copy at most this many pixels on its longer side.
ANALYSIS_SIDE = 128
SATURATION_WEIGHT = 0.5
# How much less a region at the edge counts than the same detail at the centre.
CENTRE_PRIOR = 0.25

_HORIZONTAL = {"west": 0.0, "east": 1.0}
_VERTICAL = {"north": 0.0, "south": 1.0}


def place(source: Size, region: tuple[float, float], gravity: str, image: Image.Image | None = None) -> Box:
    """The box of size `region` inside `source`, placed by `gravity`; `smart` needs the image (the
    centre without it). Whole-pixel offsets when the region is whole pixels, so a crop stays sharp."""
    (width, height), (region_width, region_height) = source, region
    region_width, region_height = min(region_width, width), min(region_height, height)
    if gravity == "smart" and image is not None:
        left, top = _most_detailed(image, (region_width, region_height))
    else:
        vertical, _, horizontal = gravity.partition("-") if "-" in gravity else (gravity, "", gravity)
        left = (width - region_width) * _HORIZONTAL.get(horizontal, 0.5)
        top = (height - region_height) * _VERTICAL.get(vertical, 0.5)
    if float(region_width).is_integer() and float(region_height).is_integer():
        left, top = float(int(left)), float(int(top))
    return (left, top, left + region_width, top + region_height)


def _most_detailed(image: Image.Image, region: tuple[float, float]) -> tuple[float, float]:
    """The top-left corner of the region of that size holding the most detail."""
    scale = min(1.0, ANALYSIS_SIDE / max(image.size))
    small_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.convert("RGB").resize(small_size, Image.Resampling.BOX)
    edges = small.convert("L").filter(ImageFilter.FIND_EDGES).tobytes()
    saturation = small.convert("HSV").getchannel("S").tobytes()
    columns, rows = small_size
    window_width = max(1, min(columns, round(region[0] * scale)))
    window_height = max(1, min(rows, round(region[1] * scale)))
    # A summed-area table of the energy: any window's sum in four look-ups.
    table = [[0.0] * (columns + 1) for _ in range(rows + 1)]
    for y in range(rows):
        running, above, row = 0.0, table[y], table[y + 1]
        for x in range(columns):
            index = y * columns + x
            running += edges[index] + SATURATION_WEIGHT * saturation[index]
            row[x + 1] = above[x + 1] + running
    best, best_at = -1.0, (0, 0)
    free_x, free_y = columns - window_width, rows - window_height
    for top in range(free_y + 1):
        for left in range(free_x + 1):
            bottom, right = top + window_height, left + window_width
            energy = table[bottom][right] - table[top][right] - table[bottom][left] + table[top][left]
            offset = math.hypot(_off_centre(left, free_x), _off_centre(top, free_y))
            score = energy * (1 - CENTRE_PRIOR * min(1.0, offset))
            if score > best:
                best, best_at = score, (left, top)
    best_left = min(best_at[0] / scale, image.width - region[0])
    best_top = min(best_at[1] / scale, image.height - region[1])
    return max(0.0, best_left), max(0.0, best_top)


def _off_centre(position: int, free: int) -> float:
    return 0.0 if free == 0 else abs(position / free - 0.5) * 2
