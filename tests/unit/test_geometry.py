"""crop, rotate, flip, and resize's gravity and pad: sizes, where the pixels go, and refusals."""

from io import BytesIO

import pytest
from PIL import Image, ImageSequence

from common.imaging import guard_decompression
from common.operations import Crop, Flip, OperationsError, Resize, Rotate, parse_operations
from tests.support.images import make_photo, mean_difference
from worker.pipeline import ImageRejected, process_image
from worker.processors import apply

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def quadrants(size: tuple[int, int] = (200, 100)) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    width, height = size
    image = Image.new("RGB", size)
    for colour, box in (
        (RED, (0, 0, width // 2, height // 2)), (GREEN, (width // 2, 0, width, height // 2)),
        (BLUE, (0, height // 2, width // 2, height)), (YELLOW, (width // 2, height // 2, width, height)),
    ):
        image.paste(colour, box)
    return image


def subject_off_centre(
    size: tuple[int, int] = (600, 200), at: int = 430
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A detailed subject (photo-like, 140×140) on a flat, plain background, right of centre."""
    image = Image.new("RGB", size, (128, 140, 150))
    box = (at, 30, at + 140, 170)
    image.paste(make_photo((140, 140), seed=7), box[:2])
    return image, box


def corners(image: Image.Image) -> tuple:
    width, height = image.size
    points = ((2, 2), (width - 3, 2), (2, height - 3), (width - 3, height - 3))
    return tuple(image.getpixel(point)[:3] for point in points)


# crop


@pytest.mark.parametrize(
    ("operation", "size", "top_left"),
    [
        (Crop(x=100, y=0, width=100, height=50), (100, 50), GREEN),
        (Crop(x=0.5, y=0.5, width=0.5, height=0.5), (100, 50), YELLOW),
        (Crop(x=10, y=60), (190, 40), BLUE),  # width and height: the rest of the image
        (Crop(width=50, height=20, gravity="south-east"), (50, 20), YELLOW),
        (Crop(width=0.25, gravity="west"), (50, 100), RED),
        (Crop(aspect="1:1"), (100, 100), RED),  # centred: red on the left half of the square's top
        (Crop(aspect="1:1", gravity="east"), (100, 100), GREEN),
        (Crop(aspect="4:1", gravity="south"), (200, 50), BLUE),
    ],
)
def test_crop_boxes_fractions_aspects_and_gravity(operation: Crop, size: tuple[int, int], top_left: tuple) -> None:
    result = apply(quadrants(), operation)
    assert result.size == size and result.getpixel((1, 1)) == top_left


@pytest.mark.parametrize(
    "operation",
    [Crop(x=400, y=0, width=10, height=10), Crop(x=350, y=50, width=51), Crop(x=0.8, width=0.5), Crop(y=200)],
)
def test_a_box_reaching_outside_the_image_is_refused(operation: Crop) -> None:
    guard_decompression(50_000_000)
    data = BytesIO()
    quadrants().save(data, "PNG")
    with pytest.raises(ImageRejected) as rejected:
        process_image(data.getvalue(), [Resize(width=400, upscale=True), operation], "png", 85, 50_000_000)
    assert rejected.value.reason == "crop_outside_image" and "outside the 400×200 image" in str(rejected.value)
    assert process_image(data.getvalue(), [Resize(width=400, upscale=True), Crop(x=150, y=50, width=250)], "png", 85,
                         50_000_000).width == 250


def test_a_box_larger_than_the_image_placed_by_gravity_is_the_whole_image() -> None:
    assert apply(quadrants(), Crop(width=500, height=500, gravity="north")).size == (200, 100)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("crop", "give a box"),
        ("crop(aspect=16:9,width=100)", "not both"),
        ("crop(aspect=16-9)", "not an aspect ratio"),
        ("crop(aspect=1000:1)", "more elongated"),
        ("crop(width=100.5)", "whole pixels"),
        ("crop(width=-1)", "greater than or equal to 0"),
        ("crop(width=0)", "width must be more than 0"),
        ("crop(width=99999999)", "less than or equal to 16384"),
        ("crop(width=10,gravity=middle)", "gravity"),
        ("crop(x=1,y=1,width=5,gravity=north)", "gravity places a box that has no x and y"),
        ("rotate(angle=361)", "angle"),
        ("rotate(angle=nan)", "angle"),
        ("rotate(background=blurple)", "not a colour"),
        ("rotate(background=" + "a" * 60 + ")", "at most 40"),
        ("flip(direction=diagonal)", "direction"),
        ("resize(width=10,height=10,fit=cover,gravity=up)", "gravity"),
    ],
)
def test_bad_geometry_parameters_are_refused_naming_them(spec: str, fragment: str) -> None:
    with pytest.raises(OperationsError, match=fragment):
        parse_operations(spec, 5)


def test_smart_crop_keeps_an_off_centre_subject_that_a_centre_crop_cuts() -> None:
    image, box = subject_off_centre()
    subject = image.crop(box)

    smart = apply(image, Crop(aspect="1:1", gravity="smart"))
    centre = apply(image, Crop(aspect="1:1"))

    assert smart.size == centre.size == (200, 200)
    left = next(x for x in range(400) if image.crop((x, 0, x + 200, 200)).tobytes() == smart.tobytes())
    assert left <= box[0] and left + 200 >= box[2]  # the whole subject is inside
    assert not (box[0] >= 200 and box[2] <= 400)  # and the centre crop (200..400) cuts it
    assert mean_difference(smart.crop((box[0] - left, 30, box[2] - left, 170)), subject) == 0


@pytest.mark.parametrize("at", [20, 230, 440])
def test_smart_gravity_follows_the_subject_wherever_it_is(at: int) -> None:
    image, box = subject_off_centre(at=at)

    result = apply(image, Resize(width=100, height=100, fit="cover", gravity="smart"))

    assert result.size == (100, 100)
    expected_subject = image.crop(box).resize((70, 70))
    found = min(
        mean_difference(result.crop((x, 15, x + 70, 85)), expected_subject) for x in range(31)
    )
    assert found < 8, (at, found)


def test_smart_crop_on_an_animation_cuts_every_frame_the_same() -> None:
    frames = []
    for shade in (0, 40, 80):
        frame, _ = subject_off_centre()
        frame.paste((shade, shade, shade), (432, 32, 442, 42))  # inside the subject: each frame its own
        frames.append(frame)
    data = BytesIO()
    frames[0].save(data, "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=50)
    guard_decompression(50_000_000)

    result = process_image(data.getvalue(), [Crop(aspect="1:1", gravity="smart")], "webp", 90, 50_000_000)

    decoded = [frame.convert("RGB") for frame in ImageSequence.Iterator(Image.open(BytesIO(result.data)))]
    assert len(decoded) == 3 and all(frame.size == (200, 200) for frame in decoded)
    assert mean_difference(decoded[0].crop((0, 60, 200, 200)), decoded[2].crop((0, 60, 200, 200))) < 1
    assert mean_difference(decoded[0], decoded[2]) > 0


# rotate and flip


@pytest.mark.parametrize(
    ("angle", "size", "expected"),
    [
        (90, (100, 200), (BLUE, RED, YELLOW, GREEN)),
        (-270, (100, 200), (BLUE, RED, YELLOW, GREEN)),
        (180, (200, 100), (YELLOW, BLUE, GREEN, RED)),
        (270, (100, 200), (GREEN, YELLOW, RED, BLUE)),
        (360, (200, 100), (RED, GREEN, BLUE, YELLOW)),
    ],
)
def test_quarter_turns_are_exact_and_clockwise(angle: float, size: tuple[int, int], expected: tuple) -> None:
    result = apply(quadrants(), Rotate(angle=angle))
    assert result.size == size and corners(result) == expected


def test_any_angle_enlarges_the_canvas_with_the_background() -> None:
    result = apply(quadrants(), Rotate(angle=45, background="#00ff00"))
    assert result.size == (214, 214)
    assert result.getpixel((2, 2)) == GREEN and result.mode == "RGB"

    transparent = apply(quadrants(), Rotate(angle=30, background="transparent"))
    assert transparent.mode == "RGBA" and transparent.getpixel((1, 1))[3] == 0
    assert transparent.getpixel((transparent.width // 2, transparent.height // 2))[3] == 255


def test_a_rotation_past_the_output_limit_is_refused_before_it_runs() -> None:
    data = BytesIO()
    Image.new("L", (1000, 1000)).save(data, "PNG")
    guard_decompression(50_000_000)
    with pytest.raises(ImageRejected) as rejected:
        process_image(data.getvalue(), [Rotate(angle=45)], "png", 85, 50_000_000, max_output_pixels=1_500_000)
    assert rejected.value.reason == "too_many_pixels" and "1416×1416" in str(rejected.value)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("horizontal", (GREEN, RED, YELLOW, BLUE)),
        ("vertical", (BLUE, YELLOW, RED, GREEN)),
        ("both", (YELLOW, BLUE, GREEN, RED)),
    ],
)
def test_flip(direction: str, expected: tuple) -> None:
    result = apply(quadrants(), Flip(direction=direction))
    assert result.size == (200, 100) and corners(result) == expected


# resize: gravity and pad


@pytest.mark.parametrize(("gravity", "top_left"), [("west", RED), ("east", GREEN), ("center", RED)])
def test_cover_crops_where_gravity_says(gravity: str, top_left: tuple) -> None:
    result = apply(quadrants((400, 100)), Resize(width=100, height=100, fit="cover", gravity=gravity))
    assert result.size == (100, 100) and result.getpixel((1, 1)) == top_left


def test_pad_fits_inside_and_fills_the_box() -> None:
    result = apply(quadrants(), Resize(width=100, height=100, fit="pad", background="black"))
    assert result.size == (100, 100)
    assert result.getpixel((50, 5)) == (0, 0, 0) and result.getpixel((50, 95)) == (0, 0, 0)
    assert result.getpixel((5, 30)) == RED and result.getpixel((95, 70)) == YELLOW

    north = apply(quadrants(), Resize(width=100, height=100, fit="pad", gravity="north", background="transparent"))
    assert north.mode == "RGBA" and north.getpixel((50, 5))[3] == 255 and north.getpixel((50, 95))[3] == 0


def test_pad_to_jpeg_from_a_large_jpeg_keeps_the_padding() -> None:
    data = BytesIO()
    quadrants((2000, 1000)).save(data, "JPEG", quality=95)
    guard_decompression(50_000_000)

    pad = Resize(width=200, height=200, fit="pad", background="black")
    result = process_image(data.getvalue(), [pad], None, 90, 50_000_000)

    image = Image.open(BytesIO(result.data))
    assert image.size == (200, 200) and max(image.getpixel((100, 10))) < 20


@pytest.mark.parametrize(
    "operation",
    [Rotate(angle=angle) for angle in (1, 30, 45, -45, 89.9, 123.4, 200, 271, -359)]
    + [Crop(aspect="16:9", gravity="smart"), Crop(x=0.1, width=0.3), Resize(width=50, height=70, fit="pad"),
       Resize(width=50, height=70, fit="cover", gravity="smart"), Flip(direction="both")]
    # a box of fractions placed by gravity: its size must not depend on where it goes
    + [Crop(width=0.37, height=0.61, gravity=gravity) for gravity in ("center", "north-west", "south-east", "smart")]
    + [Crop(x=0.33, y=0.29, width=0.41, height=0.5), Crop(width=5, height=0.55, gravity="east")],
)
@pytest.mark.parametrize("size", [(1, 1), (7, 300), (301, 199)])
def test_the_size_checked_before_an_operation_is_the_size_it_makes(operation, size: tuple[int, int]) -> None:
    from worker.processors import output_size

    assert apply(make_photo(size), operation).size == output_size(size, operation)
