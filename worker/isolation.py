"""The image pipeline in a child process the worker can stop.

One Pillow call (a large blur, an enormous resize) cannot be interrupted from Python, and a hostile
image may ask for more memory than the machine has. The worker therefore hands each job to a
long-lived child process and waits at most until the job's deadline: past it, the child is killed
and the job fails with `time_limit`; a fresh child takes the next job. The child's address space is
capped (WORKER_MEMORY_LIMIT_MB), so an allocation beyond it fails as `out_of_memory` instead of
starving the machine. The child is a fresh interpreter (`python -m worker.isolation`), not a fork:
the worker has threads (AMQP I/O, storage), and forking a threaded process can copy a lock that is
held. Requests and answers are pickled over a socket pair; only the worker ever writes to it.
"""

import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from common.formats import ColorPolicy, MetadataPolicy
from common.operations import Operation
from common.variants import Variant
from worker.pipeline import ImageRejected, ProcessedImage, ProcessedVariants, single_output

logger = logging.getLogger(__name__)

# The child's own check between operations reports a timeout with the step it stopped before;
# the kill is the backstop for one long call.
KILL_MARGIN_S = 0.5
STARTUP_TIMEOUT_S = 60.0
READY = "ready"
# How often a running job asks whether it was cancelled (each ask may be a storage round trip).
CANCEL_POLL_S = 0.25


class PipelineCancelled(Exception):
    """The job was cancelled while its image was processed; the image process was stopped."""


@dataclass(frozen=True)
class PipelineRequest:
    data: bytes
    operations: list[Operation]
    output_format: str | None
    quality: int
    max_pixels: int
    max_output_pixels: int
    time_limit_s: float
    color: ColorPolicy = "srgb"
    metadata: MetadataPolicy = "strip"
    max_frames: int = 500
    max_bytes: int | None = None
    logo_dir: Path | None = None
    # Several outputs from one decode (None: the one described by operations, output_format, quality).
    variants: list[Variant] | None = None

    def outputs(self) -> list[Variant]:
        return self.variants or [single_output(self.operations, self.output_format, self.quality)]


class Pipeline(Protocol):
    """Runs one job's image work: `PipelineProcess` here, in-process in unit tests."""

    def start(self) -> None: ...

    def run_variants(
        self, request: PipelineRequest, cancelled: Callable[[], bool] | None = None
    ) -> ProcessedVariants: ...

    def close(self) -> None: ...


class PipelineProcess:
    def __init__(self, memory_limit_mb: int) -> None:
        self._memory_limit_mb = memory_limit_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None

    def start(self) -> None:
        """Start the child if it is not running, and wait until it takes requests."""
        if self._process is not None and self._process.poll() is None:
            return
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "worker.isolation", str(theirs.fileno()), str(self._memory_limit_mb)],
                pass_fds=[theirs.fileno()],
            )
            parent = self._connection = Connection(ours.detach())
        # Until it says so, the child may still die of a stop signal meant for the worker.
        if not parent.poll(STARTUP_TIMEOUT_S) or parent.recv() != READY:
            self._kill()
            raise RuntimeError("the image process did not start")

    def run(self, request: PipelineRequest, cancelled: Callable[[], bool] | None = None) -> ProcessedImage:
        """The first (usually the only) output."""
        return next(iter(self.run_variants(request, cancelled).outputs.values()))

    def run_variants(
        self, request: PipelineRequest, cancelled: Callable[[], bool] | None = None
    ) -> ProcessedVariants:
        """Every output, from one decode; the time limit and memory cap cover them all. `cancelled` is
        asked every CANCEL_POLL_S while the child works, and when it says so the child is killed (a
        fresh one takes the next job)."""
        self.start()
        assert self._connection is not None
        try:
            self._connection.send(request)
        except (BrokenPipeError, OSError):
            # It died between jobs (killed from outside): a fresh one takes this job.
            self._reap()
            self.start()
            assert self._connection is not None
            self._connection.send(request)
        ready = self._wait(request.time_limit_s + KILL_MARGIN_S, cancelled)
        if not ready:
            self._kill()
            raise ImageRejected(
                "time_limit", f"the job ran out of its time limit ({request.time_limit_s:g} s) while processing"
            )
        try:
            kind, payload = self._connection.recv()
        except (EOFError, OSError):
            code = self._reap()
            raise ImageRejected(
                "processing_error", f"the image process ended unexpectedly (exit code {code})"
            ) from None
        if kind == "ok":
            processed: ProcessedVariants = payload
            return processed
        reason, message = payload
        raise ImageRejected(reason, message)

    def _wait(self, limit_s: float, cancelled: Callable[[], bool] | None) -> bool:
        """Whether the child answered within `limit_s`; raises PipelineCancelled if asked to stop first."""
        assert self._connection is not None
        deadline = time.monotonic() + limit_s
        while True:
            remaining = deadline - time.monotonic()
            step = remaining if cancelled is None else min(CANCEL_POLL_S, remaining)
            try:
                if self._connection.poll(max(0.0, step)):
                    return True
            except (EOFError, OSError):
                return True  # the child is gone: recv says so
            if remaining <= step:
                return False
            if cancelled is not None and cancelled():
                self._kill()
                raise PipelineCancelled("the job was cancelled while its image was processed")

    def close(self) -> None:
        """Closing its end of the socket ends the child; it is killed if it lingers."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is not None:
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._kill()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
        self._reap()

    def _reap(self) -> int | None:
        process, self._process = self._process, None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if process is None:
            return None
        try:
            return process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _serve(connection: Connection, memory_limit_mb: int) -> None:
    """The child: take requests until the worker closes its end."""
    import signal
    import time

    from common.imaging import guard_decompression
    from worker.pipeline import process_variants
    from worker.processors.watermark import use_logo_dir

    # A stop signal is for the worker, which lets the current job finish; the child ends when the
    # worker closes the pipe (or is killed by it).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_mb:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    connection.send(READY)
    guarded_at: int | None = None
    while True:
        try:
            request: PipelineRequest = connection.recv()
        except (EOFError, OSError):
            return
        if guarded_at != request.max_pixels:
            guard_decompression(request.max_pixels)
            guarded_at = request.max_pixels
        if request.logo_dir is not None:
            use_logo_dir(request.logo_dir)
        try:
            result = process_variants(
                request.data, request.outputs(), request.max_pixels, deadline=time.monotonic() + request.time_limit_s,
                max_output_pixels=request.max_output_pixels, color=request.color, metadata=request.metadata,
                max_frames=request.max_frames, max_bytes=request.max_bytes,
            )
            reply: tuple[str, Any] = ("ok", result)
        except ImageRejected as exc:
            reply = ("rejected", (exc.reason, str(exc)))
        except MemoryError:
            reply = ("rejected", ("out_of_memory", f"the image needs more than {memory_limit_mb} MB to process"))
        except Exception as exc:  # reported as the job's failure, the child carries on
            reply = ("rejected", ("processing_error", f"processing failed: {type(exc).__name__}: {exc}"))
        try:
            connection.send(reply)
        except (BrokenPipeError, OSError):
            return


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
