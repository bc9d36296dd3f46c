"""Every byte string gets an answer: 202 or a clear 4xx at the door, a completed or clearly failed
job in the worker — never a 5xx, a crash, a hang or a silent loss.

Property tests (hypothesis, bounded) call the door's checks, the operations parser and the pipeline
directly; a table of odd files goes through the running system."""

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from api.errors import ApiError
from api.problems import status_of
from api.uploads import sniff_image
from common.imaging import guard_decompression
from common.operations import OperationsError, Resize, parse_operations
from tests.support.images import make_photo
from worker.pipeline import ImageRejected, process_image

MAX_PIXELS = 4_000_000
BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encoded(format_: str, size=(64, 48), **options) -> bytes:
    buffer = io.BytesIO()
    image = make_photo(size, "RGBA" if format_ in ("PNG", "WEBP", "AVIF", "HEIF") else "RGB")
    if format_ in ("GIF", "BMP"):
        image = image.convert("RGB")
    image.save(buffer, format_, **options)
    return buffer.getvalue()


SEEDS = {name: encoded(name) for name in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")}


def mutations() -> st.SearchStrategy[bytes]:
    """Real images with bytes flipped, cut short or spliced: what a decoder meets in the wild."""

    def mutate(seed: bytes, cut: int, flips: list[tuple[int, int]], tail: bytes) -> bytes:
        data = bytearray(seed[: max(1, cut)])
        for position, value in flips:
            data[position % len(data)] = value
        return bytes(data) + tail

    return st.builds(
        mutate,
        st.sampled_from(list(SEEDS.values())),
        st.integers(1, 4000),
        st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
        st.binary(max_size=64),
    )


def any_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2048), mutations())


@BOUNDED
@given(any_bytes())
def test_the_door_answers_any_bytes_with_an_image_or_a_4xx(data: bytes) -> None:
    guard_decompression(MAX_PIXELS)
    try:
        found = sniff_image(io.BytesIO(data), len(data), MAX_PIXELS)
    except ApiError as exc:
        assert status_of(exc) in (415, 422), exc
        return
    assert found.width * found.height <= MAX_PIXELS


@BOUNDED
@given(any_bytes())
def test_the_pipeline_answers_any_bytes_with_a_result_or_a_named_rejection(data: bytes) -> None:
    guard_decompression(MAX_PIXELS)
    try:
        result = process_image(data, [Resize(width=32)], None, 80, MAX_PIXELS)
    except ImageRejected as exc:
        assert exc.reason in ("undecodable", "unsupported_format", "too_many_pixels", "truncated"), exc
        return
    assert Image.open(io.BytesIO(result.data)).width <= 32


@BOUNDED
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet="resizewatrkfl(),=\"'[]{}: 0123456789.-", max_size=300),
        st.recursive(st.just("[]"), lambda inner: inner.map(lambda s: f"[{s}]"), max_leaves=50),
    )
)
def test_the_operations_parser_answers_any_text_with_operations_or_a_named_problem(spec: str) -> None:
    try:
        operations = parse_operations(spec, 20)
    except OperationsError as exc:
        assert str(exc)
        return
    assert 1 <= len(operations) <= 20


# --- A table of odd files, through the running system ------------------------------------------


def _dds_with_unknown_pixel_format() -> bytes:
    header = bytearray(124)
    struct.pack_into("<IIII", header, 0, 124, 0x1007, 64, 64)  # size, flags, height, width
    struct.pack_into("<II4s", header, 72, 32, 0x4, b"ZZZZ")  # pixel format: FOURCC nobody implements
    return b"DDS " + bytes(header) + bytes(64)


def _with_huge_icc(format_: str) -> bytes:
    buffer = io.BytesIO()
    make_photo((40, 30)).save(buffer, format_, icc_profile=b"\0" * (3 * 1024 * 1024))
    return buffer.getvalue()


def _jpeg_with_huge_exif() -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    make_photo((40, 30)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def _mpo() -> bytes:
    buffer = io.BytesIO()
    first, second = make_photo((80, 60)), make_photo((80, 60)).rotate(90)
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    return buffer.getvalue()


ODD_FILES: dict[str, tuple[bytes, set[int]]] = {
    "empty": (b"", {422}),
    "dds with an unimplemented pixel format": (_dds_with_unknown_pixel_format(), {415}),
    "ftex magic": (b"FTEX" + struct.pack("<i", 0x50) + bytes(200), {415}),
    "psd magic": (b"8BPS\x00\x01" + bytes(200), {415}),
    "eps magic": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", {415}),
    "pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\n", {415}),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', {415}),
    "ico": (b"\x00\x00\x01\x00\x01\x00\x10\x10" + bytes(200), {415}),
    "text named .jpg": (b"hello, world\n", {415}),
    # Pillow will not inflate a PNG chunk that large, and says so.
    "png with a 3 MB ICC profile": (_with_huge_icc("PNG"), {415}),
    "jpeg with a 3 MB ICC profile": (_with_huge_icc("JPEG"), {202}),
    "jpeg with a 60 KB EXIF": (_jpeg_with_huge_exif(), {202}),
    "multi-picture jpeg (MPO)": (_mpo(), {202}),
    **{
        f"{name} cut to {length} bytes": (data[:length], {202, 415})
        for name, data in SEEDS.items()
        for length in (1, 8, 30, len(data) // 2)
    },
}


@pytest.mark.integration
def test_odd_files_get_an_answer_and_accepted_ones_finish(system, tmp_path: Path) -> None:
    accepted: dict[str, str] = {}
    for name, (data, expected) in ODD_FILES.items():
        path = tmp_path / "upload.jpg"
        path.write_bytes(data)
        response = system.upload(path, operations="resize(width=32)")
        assert response.status_code in expected, (name, response.status_code, response.text)
        if response.status_code == 202:
            accepted[name] = response.json()["job_id"]
        else:
            detail = response.json()["detail"]
            refusals = ("the file is not an image", "the file starts like an image", "the uploaded file is empty")
            assert detail.startswith(refusals), (name, detail)
            assert "/tmp" not in detail, detail
    for name, job_id in accepted.items():
        status = system.wait_finished(job_id)
        if status["status"] == "failed":
            assert status["error_reason"] in ("truncated", "undecodable"), (name, status)
        else:
            assert status["result"]["width"] <= 32, name
    for name in ("jpeg with a 3 MB ICC profile", "jpeg with a 60 KB EXIF", "multi-picture jpeg (MPO)"):
        assert system.status(accepted[name])["status"] == "completed", name
    assert system.status(accepted["multi-picture jpeg (MPO)"])["result"]["format"] == "jpeg"
    with system.http as client:
        result = client.get(f"/result/{accepted['jpeg with a 3 MB ICC profile']}")
    assert Image.open(io.BytesIO(result.content)).info.get("icc_profile") is None  # dropped, not copied
