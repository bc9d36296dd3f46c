"""Every corpus file (tests/corpus/files.py) through the image process the worker runs, with the
outcome it must have: size, mode, format, frames and their timing, no GPS or other metadata, and
colours in sRGB with no profile left to misread."""

from collections.abc import Iterator
from io import BytesIO

import pytest
from PIL import Image, ImageSequence

from common.operations import parse_operations
from tests.corpus.files import CORPUS, CorpusFile
from tests.support.images import PRIVATE_STRINGS
from worker.isolation import PipelineProcess, PipelineRequest


@pytest.fixture(scope="module")
def image_process() -> Iterator[PipelineProcess]:
    process = PipelineProcess(memory_limit_mb=2048)
    yield process
    process.close()


@pytest.mark.parametrize("corpus_file", CORPUS, ids=[entry.name for entry in CORPUS])
def test_corpus_file_comes_out_as_expected(image_process: PipelineProcess, corpus_file: CorpusFile) -> None:
    data = corpus_file.make()
    expected = corpus_file.expected

    result = image_process.run(PipelineRequest(
        data=data, operations=parse_operations(corpus_file.operations, 20), output_format=corpus_file.output_format,
        quality=90, max_pixels=100_000_000, max_output_pixels=100_000_000, time_limit_s=60,
    ))

    image = Image.open(BytesIO(result.data))
    frames = [frame.copy() for frame in ImageSequence.Iterator(image)]
    made = (result.format, (result.width, result.height), result.frames)
    assert made == (expected.format, expected.size, expected.frames)
    assert image.format.lower() == expected.format and image.size == expected.size and len(frames) == expected.frames
    assert image.mode == expected.mode or (expected.format == "gif" and image.mode in ("P", "RGB", "RGBA"))
    if expected.durations:
        assert tuple(frame.info.get("duration") for frame in frames) == expected.durations
    if expected.pixel is not None:
        point, colour = expected.pixel
        found = frames[0].convert("RGB").getpixel(point)
        assert all(abs(a - b) <= 16 for a, b in zip(found, colour, strict=False)), (found, colour)
    if expected.alpha:
        assert frames[0].convert("RGBA").getchannel("A").getextrema()[0] == 0
    assert len(image.getexif()) == 0 and not image.info.get("icc_profile") and "xmp" not in image.info
    assert not any(secret in result.data for secret in (*PRIVATE_STRINGS, b"PhoneCo"))
