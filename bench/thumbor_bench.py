"""Thumbor against the system on imgproxy's public benchmark workload: ~2K photos fit into 512×512,
JPEG quality 85, two clients each sending one request at a time.

    thumbor  thumbor from PyPI (bench/thumbor-requirements.txt) in a virtualenv of its own, `.venv-thumbor`
             (it needs Pillow < 13; created on first use and reused while the requirements file is
             unchanged), bound to 127.0.0.1: Pillow engine, file loader on the image folder, no storage,
             no result storage, unsafe URLs (no security key), non-progressive JPEG. Two thumbor
             processes, each a server on its own port with one client of its own. With `--processes 2`
             both share one listening socket, and now and then (2 rounds of 3 in one bench, 1 of 6 in a
             check) both clients' keep-alive connections went to the same process, which then did all
             the work on one core: 65–70 img/s and p50 25 ms against 122–129 img/s and 13 ms, at the
             same CPU per image. One server per client is thumbor at its best, as behind a balancing
             proxy. A request is GET /unsafe/fit-in/512x512/<file>; latency is request → body received.
    system   the real system (bench/system.py) with 2 workers, operations `resize(width=512,height=512)`;
             a client uploads, waits for the job's completion event, then GET /result: latency is
             upload start → result received, what a caller of thumbor waits for too.

Both see the same images in the same order. Rounds alternate which contender goes first; the ratios are
taken within each round and the median is reported with the spread. CPU per image is the servers'
(thumbor's processes; the system's API, workers, notifier and S3 server; not the shared RabbitMQ).
"""

import fcntl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.report import ratio
from bench.system import BenchSystem, CpuMeter, cycle
from harness.processes import PROJECT_DIR, GiveUp, ServiceProcess, free_port, wait_for
from load_test.client import EventListener
from load_test.results import percentiles

REQUIREMENTS = PROJECT_DIR / "bench" / "thumbor-requirements.txt"
VENV = PROJECT_DIR / ".venv-thumbor"
BOX = 512
QUALITY = 85
OPERATIONS = f"resize(width={BOX},height={BOX})"
CLIENTS = 2
PROCESSES = 2
RESULT_TIMEOUT_S = 120


def thumbor_python() -> Path:
    """The thumbor virtualenv's interpreter; the virtualenv is made (or remade) when missing or when the
    requirements file changed since it was made."""
    python, stamp = VENV / "bin" / "python", VENV / ".installed"
    wanted = REQUIREMENTS.read_text()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.with_name(VENV.name + ".lock"), "w") as lock:  # two benches at once install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                check=True,
            )
            stamp.write_text(wanted)
    return python


@dataclass
class Run:
    """One contender's closed-loop run: `count` images by CLIENTS clients, one request at a time each."""

    img_s: float
    p50_ms: float | None
    p95_ms: float | None
    count: int
    cpu_s_per_image: float
    cpu_ms_per_image: dict[str, float] = field(default_factory=dict)


class Thumbor:
    """`processes` thumbor servers, one process and one port each; client i talks to server i."""

    def __init__(self, image_dir: Path, log_dir: Path, processes: int = PROCESSES) -> None:
        python = thumbor_python()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.image_dir = image_dir
        config = log_dir / "thumbor.conf"
        config.write_text(
            "LOADER = 'thumbor.loaders.file_loader'\n"
            f"FILE_LOADER_ROOT_PATH = {str(image_dir)!r}\n"
            "STORAGE = 'thumbor.storages.no_storage'\n"
            "RESULT_STORAGE = None\n"
            "ENGINE = 'thumbor.engines.pil'\n"
            "ALLOW_UNSAFE_URL = True\n"
            "PROGRESSIVE_JPEG = False\n"
            f"QUALITY = {QUALITY}\n"
        )
        self.services: list[ServiceProcess] = []
        self.urls: list[str] = []
        try:
            for index in range(processes):
                port = free_port()
                self.urls.append(f"http://127.0.0.1:{port}")
                self.services.append(ServiceProcess(
                    f"thumbor-{index + 1}",
                    [str(python.with_name("thumbor")), "--ip", "127.0.0.1", "--port", str(port), "--conf",
                     str(config), "--processes", "1", "--log-level", "warning"],
                    {"PATH": "/usr/bin:/bin", "HOME": str(log_dir)}, log_dir / f"thumbor-{index + 1}.log",
                ).start())
            for service, url in zip(self.services, self.urls, strict=True):
                wait_for(lambda service=service, url=url: _answers(service, url), 60, f"{service.name} to answer")
        except BaseException:
            self.close()
            raise

    def run(self, images: list[Path], count: int) -> Run:
        """CPU per image is metered per server, so bench.json shows that both did their share."""
        cpu = CpuMeter({service.name: [service.process.pid] for service in self.services if service.process})
        return _measure(self.urls, self._fetch, cycle(images, count), cpu)

    def _fetch(self, client: httpx.Client, path: Path) -> None:
        response = client.get(f"/unsafe/fit-in/{BOX}x{BOX}/{path.relative_to(self.image_dir)}")
        if response.status_code != 200 or not response.content.startswith(b"\xff\xd8"):
            raise RuntimeError(f"thumbor answered {response.status_code} for {path.name}: {response.text[:200]}")

    def close(self) -> None:
        for service in self.services:
            service.stop()


def _answers(service: ServiceProcess, url: str) -> bool:
    if not service.running:
        raise GiveUp(f"{service.name} exited:\n{service.log()[-3000:]}")
    return httpx.get(f"{url}/healthcheck", timeout=5).status_code == 200


class SystemOnThumborsWorkload:
    """The system as thumbor's caller would use it: upload, wait for the completion event, GET /result."""

    def __init__(self, system: BenchSystem) -> None:
        self.system = system
        self._ended: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._contents: dict[Path, bytes] = {}

    def run(self, images: list[Path], count: int) -> Run:
        paths = cycle(images, count)
        self._contents = {path: path.read_bytes() for path in set(paths)}
        cpu = CpuMeter({name: pids for name, pids in self.system.cpu.pids.items() if name != "client"})
        listener = EventListener(self.system.settings, lambda job_id, _at: self._done(job_id).set())
        listener.start()
        try:
            return _measure([self.system.system.api_url], self._fetch, paths, cpu)
        finally:
            listener.stop()
            self._ended.clear()

    def _done(self, job_id: str) -> threading.Event:
        with self._lock:
            return self._ended.setdefault(job_id, threading.Event())

    def _fetch(self, client: httpx.Client, path: Path) -> None:
        response = client.post(
            "/upload", files={"file": (path.name, self._contents[path])}, data={"operations": OPERATIONS}
        )
        if response.status_code != 202:
            raise RuntimeError(f"upload of {path.name}: HTTP {response.status_code} {response.text[:200]}")
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        # The event says the job ended; a lost event is caught by reading the status now and then.
        while not self._done(job_id).wait(5) and time.monotonic() < deadline:
            if client.get(f"/status/{job_id}").json().get("status") in ("completed", "failed"):
                break
        result = client.get(f"/result/{job_id}")
        with self._lock:
            self._ended.pop(job_id, None)
        if result.status_code != 200 or not result.content.startswith(b"\xff\xd8"):
            raise RuntimeError(f"result of {path.name} ({job_id}): HTTP {result.status_code} {result.text[:200]}")


def _measure(
    base_urls: list[str], fetch: Callable[[httpx.Client, Path], None], paths: list[Path], cpu: CpuMeter
) -> Run:
    """CLIENTS threads, each with its own keep-alive connection (client i to `base_urls[i]`, in turn),
    each taking the next path when its last one is done (a closed loop): images per second over the
    whole run, each request's latency."""
    queue = list(reversed(paths))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client_loop(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=RESULT_TIMEOUT_S) as client:
            while not errors:
                with lock:
                    if not queue:
                        return
                    path = queue.pop()
                started = time.perf_counter()
                try:
                    fetch(client, path)
                except BaseException as exc:  # raised in the caller's thread below
                    errors.append(exc)
                    return
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [
        threading.Thread(target=client_loop, args=(base_urls[index % len(base_urls)],), name=f"client-{index}")
        for index in range(CLIENTS)
    ]
    cpu.start()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_ms = cpu.per_job(len(paths))
    if errors:
        raise errors[0]
    spread = percentiles(latencies)
    return Run(
        img_s=round(len(paths) / elapsed, 2),
        p50_ms=spread["p50"],
        p95_ms=spread["p95"],
        count=len(paths),
        cpu_s_per_image=round(sum(cpu_ms.values()) / 1000, 4),
        cpu_ms_per_image=cpu_ms,
    )


def compare(thumbor: Thumbor, system: SystemOnThumborsWorkload, images: list[Path], count: int, rounds: int) -> dict:
    """`rounds` rounds, alternating which contender goes first; ratios within each round, then the median."""
    contenders: list[tuple[str, Thumbor | SystemOnThumborsWorkload]] = [("thumbor", thumbor), ("system", system)]
    for _, contender in contenders:  # warm-up: codecs, fonts, connections, thumbor's imports
        contender.run(images, 2 * CLIENTS)
    runs: list[dict[str, Run]] = []
    for index in range(rounds):
        order = contenders[:: 1 if index % 2 == 0 else -1]
        runs.append({name: contender.run(images, count) for name, contender in order})
    throughput = [ratio(each["system"].img_s, each["thumbor"].img_s) or 0.0 for each in runs]
    latency = [ratio(each["system"].p50_ms, each["thumbor"].p50_ms) or 0.0 for each in runs]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 4)

    figures: dict = {
        "workload": f"fit into {BOX}×{BOX}, JPEG q{QUALITY}, {CLIENTS} clients one request at a time each",
        "images": [{"file": path.name, "bytes": path.stat().st_size} for path in images],
        "count_per_round": count,
        "rounds": [
            {"first": next(iter(each)), **{name: asdict(run) for name, run in each.items()},
             "system_vs_thumbor": throughput[index], "system_p50_vs_thumbor": latency[index]}
            for index, each in enumerate(runs)
        ],
    }
    for name in ("thumbor", "system"):
        for figure in ("img_s", "p50_ms", "p95_ms", "cpu_s_per_image"):
            figures[f"{name}_{figure}"] = median([getattr(each[name], figure) for each in runs])
    figures["system_cpu_ms_per_image"] = {
        process: median([each["system"].cpu_ms_per_image[process] for each in runs])
        for process in runs[0]["system"].cpu_ms_per_image
    }
    figures.update({
        "system_vs_thumbor": median(throughput),
        "system_vs_thumbor_spread": [min(throughput), max(throughput)],
        "system_p50_vs_thumbor": median(latency),
        "system_p50_vs_thumbor_spread": [min(latency), max(latency)],
    })
    return figures


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.thumbor_bench`: this comparison alone, on a SeaweedFS of its own; `--env KEY=VALUE`
    starts the system with a setting changed (for A/B runs of a change)."""
    import argparse
    import shutil
    import tempfile

    from bench.images import long_side_images
    from harness.objectstore import PrivateObjectStore

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--long-side", type=int, default=2048)
    parser.add_argument("--count", type=int, default=160, help="images per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "results" / "bench" / "thumbor.json")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a setting of the system")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    folder = PROJECT_DIR / "results" / "bench" / "images"
    images = [image.path for image in long_side_images(args.long_side, folder)]
    work = Path(tempfile.mkdtemp(prefix="imgpipe-thumbor-"))
    (work / "s3").mkdir()
    store = PrivateObjectStore(work / "s3").start()
    thumbor = system = None
    try:
        assert store._process is not None  # the bench meters the store's process
        thumbor = Thumbor(folder, work / "logs")
        system = BenchSystem(store.endpoint, store._process.pid, work / "logs", 2, concurrency=CLIENTS, env=env)
        figures = compare(thumbor, SystemOnThumborsWorkload(system), images, args.count, args.rounds)
    finally:
        if system is not None:
            system.close()
        if thumbor is not None:
            thumbor.close()
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    from bench.report import thumbor_table, write_json

    write_json(figures, args.out)

    print(thumbor_table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
