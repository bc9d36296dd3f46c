"""The in-process contenders: images per second with one process per core, bytes in memory.

    limit    the worker's own pipeline (`worker.pipeline.process_image`) with the system's default
             operations: no queue, no storage; what the system could reach if nothing else cost.
    libvips  pyvips `thumbnail_buffer` + the same text overlay + `jpegsave_buffer(Q=85)`, one libvips
             thread per process (VIPS_CONCURRENCY=1, operation cache off).
    limit-512, libvips-512   the same on thumbor's workload: fit into 512×512, no watermark, JPEG q85.

Every process runs the same image the same number of times; the figure is images / wall time of the
slowest process. Rounds alternate the contenders' order and the best round of each is kept, so a
burst of load from outside hits both alike and does not decide the ratio.
"""

import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.operations import DEFAULT_BOX, Watermark, parse_operations

OPERATIONS = "resize,watermark"
FIT_512 = 512
QUALITY = 85
MAX_PIXELS = 100_000_000
CONTENDERS = ("limit", "libvips")
CONTENDERS_512 = ("limit-512", "libvips-512")

# Set in each pool process before pyvips is imported.
_images: dict[str, bytes] = {}
_functions: dict[str, Callable[[bytes], bytes]] = {}


def _init(paths: dict[str, str]) -> None:
    os.environ["VIPS_CONCURRENCY"] = "1"
    for label, path in paths.items():
        _images[label] = Path(path).read_bytes()
    _functions["limit"] = _limit_function(OPERATIONS)
    _functions["libvips"] = _libvips_function()
    _functions["limit-512"] = _limit_function(f"resize(width={FIT_512},height={FIT_512})")
    _functions["libvips-512"] = _libvips_fit_function(FIT_512)


def _limit_function(operations_text: str) -> Callable[[bytes], bytes]:
    from worker.pipeline import process_image

    operations = parse_operations(operations_text, 20)
    return lambda data: process_image(data, operations, None, QUALITY, MAX_PIXELS).data


def _libvips_fit_function(box: int) -> Callable[[bytes], bytes]:
    import pyvips

    pyvips.cache_set_max(0)
    return lambda data: pyvips.Image.thumbnail_buffer(data, box, height=box, size="down").jpegsave_buffer(Q=QUALITY)


def _libvips_function() -> Callable[[bytes], bytes]:
    import pyvips

    pyvips.cache_set_max(0)
    mark = Watermark()
    font = "DejaVu Sans Bold"

    def run(data: bytes) -> bytes:
        image = pyvips.Image.thumbnail_buffer(data, DEFAULT_BOX, height=DEFAULT_BOX, size="down")
        shorter = min(image.width, image.height)
        text_px, margin = max(8, round(shorter * mark.size)), round(shorter * 0.02)
        stroke = max(1, round(text_px / 12))
        # White glyphs (the rendered mask) with a dark outline (the mask dilated), at the opacity.
        glyphs = pyvips.Image.text(mark.text, font=f"{font} {text_px}px", dpi=72)
        glyphs = glyphs.embed(
            stroke, stroke, glyphs.width + 2 * stroke, glyphs.height + 2 * stroke, extend="black"
        )
        size = 2 * stroke + 1
        outline = glyphs.rank(size, size, size * size - 1)
        overlay = glyphs.bandjoin([glyphs, glyphs, (outline * mark.opacity).cast("uchar")])
        overlay = overlay.copy(interpretation="srgb")
        x, y = image.width - overlay.width - margin, image.height - overlay.height - margin
        marked = image.composite2(overlay, "over", x=x, y=y)
        if marked.bands == 4:
            marked = marked.extract_band(0, n=3)
        return marked.jpegsave_buffer(Q=QUALITY)

    return run


def _run(task: tuple[str, str, int]) -> float:
    """The CPU seconds this process spent on `iterations` images (the caller times the wall clock)."""
    contender, label, iterations = task
    function, data = _functions[contender], _images[label]
    started = time.process_time()
    for _ in range(iterations):
        function(data)
    return time.process_time() - started


@dataclass
class InProcessResult:
    img_s: dict[str, float]  # contender -> best round's images per second
    rounds: dict[str, list[float]]  # every round's figure
    # contender -> best round's CPU ms per image: unlike img/s, barely moved by other load on the machine
    cpu_ms: dict[str, float] = field(default_factory=dict)


class InProcessBench:
    """A pool of `processes` (default: one per core) holding the images in memory."""

    def __init__(self, images: dict[str, Path], processes: int | None = None) -> None:
        self.processes = processes or os.cpu_count() or 1
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(
            self.processes, initializer=_init, initargs=({k: str(v) for k, v in images.items()},)
        )

    def measure(
        self, label: str, iterations: int, rounds: int = 3, contenders: tuple[str, ...] = CONTENDERS
    ) -> InProcessResult:
        self._pass(contenders, label, 1)  # warm-up: first calls load codecs and fonts
        figures: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        for round_ in range(rounds):
            order = contenders if round_ % 2 == 0 else contenders[::-1]
            for name, (rate, cpu_ms) in self._pass(order, label, iterations).items():
                figures[name].append(rate)
                cpu[name].append(cpu_ms)
        return InProcessResult(
            {name: max(rates) for name, rates in figures.items()}, figures,
            {name: min(values) for name, values in cpu.items()},
        )

    def _pass(self, order: tuple[str, ...], label: str, iterations: int) -> dict[str, tuple[float, float]]:
        """contender → (images per second, CPU ms per image)."""
        figures = {}
        images = self.processes * iterations
        for name in order:
            started = time.perf_counter()
            cpu_s = self._pool.map(_run, [(name, label, iterations)] * self.processes, chunksize=1)
            figures[name] = (round(images / (time.perf_counter() - started), 2), round(sum(cpu_s) * 1000 / images, 2))
        return figures

    def close(self) -> None:
        self._pool.close()
        self._pool.join()
