"""Where the time goes outside the pipeline: py-spy samples of the API and a worker, in phases.

`Profiler` runs `py-spy record --format raw` on processes during a measurement; `breakdown` sorts
each sample into the first phase whose frame it contains. Worker: wall time of the handler thread
(`--idle`: waiting on storage or the broker counts), in ms per job. API: wall time of the threads
that run `/upload`, in ms per upload, and where the process holds the GIL (`--gil`: Python running,
a proxy for its CPU), in ms per upload.
"""

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATE = 250  # samples per second

WORKER_PHASES = (
    ("pipeline", "process_image ("),
    ("read job record", "JobStore.get ("),
    ("write job records", "JobStore.save ("),
    ("download original", "ObjectStore.get ("),
    ("upload result", "ObjectStore.put ("),
    ("publish event", "Publisher.publish ("),
    ("other", None),
)
UPLOAD_PHASES = (
    ("multipart parsing", "formparsers"),
    ("sniff image", "sniff_image ("),
    ("store original", "ObjectStore.put_file ("),
    ("write job record", "JobStore.save ("),
    ("publish job (confirmed)", "Publisher.publish ("),
)
API_CPU_PHASES = (
    *UPLOAD_PHASES,
    ("status and other routes", "api/routes/"),
    # The counters' own work, not every stack under the outermost middleware: what runs below it
    # (dependencies, form, validation, the response) is the framework's.
    ("upload counters (metrics)", "UploadCounters."),
    ("HTTP server, ASGI, FastAPI", None),
)

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


@dataclass
class Profiler:
    """`py-spy record` on one process until `stop()`; `idle` includes threads that wait, `gil` only
    the thread holding the GIL."""

    pid: int
    output: Path
    idle: bool = False
    gil: bool = False

    def start(self) -> "Profiler":
        self.output.parent.mkdir(parents=True, exist_ok=True)
        command = [py_spy(), "record", "--pid", str(self.pid), "--rate", str(RATE), "--format", "raw",
                   "--threads", "--nonblocking", "-o", str(self.output)]
        self._process = subprocess.Popen(
            command + (["--idle"] if self.idle else []) + (["--gil"] if self.gil else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def stop(self) -> list[tuple[str, int]]:
        self._process.send_signal(signal.SIGINT)
        _, stderr = self._process.communicate(timeout=60)
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote nothing: {stderr.decode(errors='replace')[-500:]}")
        return read_samples(self.output)


def read_samples(path: Path) -> list[tuple[str, int]]:
    samples = []
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if match:
            samples.append((match["stack"], int(match["count"])))
    return samples


def breakdown(
    samples: list[tuple[str, int]], phases, per: int, thread_has: str | None = None, within: str | None = None
) -> dict[str, float]:
    """ms per job (`per` jobs) in each phase; samples outside `within` (when given) go to the last
    phase; only threads whose stack contains `thread_has` count."""
    counts: Counter = Counter()
    for stack, count in samples:
        if thread_has and thread_has not in stack:
            continue
        counts[_phase(stack, phases, within)] += count
    return {name: round(counts[name] * 1000 / RATE / per, 1) for name, _ in phases if counts[name]}


def _phase(stack: str, phases, within: str | None) -> str:
    if within is None or within in stack:
        for name, marker in phases:
            if marker is not None and marker in stack:
                return name
    if within is not None and within in stack:
        return "other"
    return phases[-1][0]
