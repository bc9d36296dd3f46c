"""The system under test as the load tools see it: the work queue's depth and consumers, and the
number of workers (set through the process manager natively, or docker compose).

Counts come from two places. An AMQP passive declare gives the exact number of ready messages and
of consumers at that instant. The management API (`GET /api/queues/{vhost}/images.jobs.work`) adds
the unacknowledged count (messages a worker holds), but its statistics are refreshed only every
`collect_statistics_interval` (5 s by default), so it is not used for anything time-critical.
"""

import contextlib
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pika
from pika.exceptions import AMQPError

from common.amqp import connect
from common.observability.management import ManagementApi
from common.settings import Settings
from common.topology import WORK_QUEUE
from harness import procs
from load_test.results import QueueSample

logger = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[1]


class Broker:
    """Reads one queue of the system's vhost. Not thread-safe: one instance per thread."""

    def __init__(
        self, settings: Settings, queue: str = WORK_QUEUE, management_url: str | None = None
    ) -> None:
        self.settings = settings
        self.queue = queue
        self._connection: pika.BlockingConnection | None = None
        self._management = ManagementApi.from_settings(settings.broker)
        if management_url:
            self._management = ManagementApi(
                httpx.Client(
                    base_url=management_url, auth=(settings.rabbitmq_user, settings.rabbitmq_password), timeout=5
                ),
                settings.rabbitmq_vhost,
            )

    def counts(self) -> tuple[int, int]:
        """(ready messages, consumers) of the queue, exact, over AMQP; reconnects once if needed."""
        for attempt in (1, 2):
            try:
                if self._connection is None or self._connection.is_closed:
                    self._connection = connect(self.settings.broker, "load-test")
                declared = self._connection.channel().queue_declare(self.queue, passive=True).method
                return declared.message_count, declared.consumer_count
            except AMQPError:
                self._close_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def consumers(self) -> int:
        return self.counts()[1]

    def management_queue(self) -> dict:
        """The queue as the management API reports it (statistics up to 5 s old)."""
        return self._management.queue(self.queue)

    def sample(self) -> QueueSample:
        ready, consumers = self.counts()
        try:
            unacked = self.management_queue().get("messages_unacknowledged")
        except httpx.HTTPError:
            unacked = None
        return QueueSample(
            at=time.time(), ready=ready, unacked=unacked, consumers=consumers, load_1m=os.getloadavg()[0]
        )

    def wait_for_consumers(self, count: int, timeout: float = 120) -> None:
        """Until the queue has exactly `count` consumers (stopping workers finish their job first)."""
        deadline = time.monotonic() + timeout
        while (current := self.consumers()) != count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.queue} has {current} consumers, not {count}, after {timeout:.0f} s"
                )
            time.sleep(0.25)

    def wait_until_empty(self, timeout: float) -> int:
        """Waits up to `timeout` s for the queue to have no ready messages; returns what is left."""
        deadline = time.monotonic() + timeout
        while (ready := self.counts()[0]) and time.monotonic() < deadline:
            time.sleep(0.5)
        return ready

    def close(self) -> None:
        self._close_connection()
        self._management.close()

    def _close_connection(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(AMQPError):
                self._connection.close()
        self._connection = None


class QueueSampler:
    """Samples the work queue every `interval` seconds on a background thread, into `samples`."""

    def __init__(self, settings: Settings, interval: float = 0.5, management_url: str | None = None) -> None:
        self.samples: list[QueueSample] = []
        self._settings = settings
        self._management_url = management_url
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-sampler", daemon=True)

    def __enter__(self) -> "QueueSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        broker = Broker(self._settings, management_url=self._management_url)
        try:
            while not self._stop.is_set():
                try:
                    self.samples.append(broker.sample())
                except (AMQPError, httpx.HTTPError, OSError) as exc:
                    logger.warning("queue sample failed: %s", exc)
                self._stop.wait(self._interval)
        finally:
            broker.close()


def scale_workers(count: int, broker: Broker, compose: bool = False, timeout: float = 180) -> None:
    """Brings the system to `count` workers and waits until `count` consume the work queue."""
    if compose:
        command = ["docker", "compose", "up", "-d", "--no-recreate", "--scale", f"worker={count}"]
    else:
        command = [str(PROJECT_DIR / "tools" / "stack.sh"), "scale", str(count)]
    logger.info("scaling to %d workers: %s", count, " ".join(command))
    subprocess.run(command, cwd=PROJECT_DIR, check=True, stdout=subprocess.DEVNULL)
    broker.wait_for_consumers(count, timeout)


def stack_running() -> bool:
    """Whether the native stack (`make run`) is up."""
    result = subprocess.run(
        [str(PROJECT_DIR / "tools" / "stack.sh"), "ps"], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    return result.returncode == 0 and "RUNNING" in result.stdout


class CpuMeter:
    """Where the machine's CPU time went during a run, in % of all cores (Linux, /proc).

    `stack`: the services started by `make run` (supervisord's process tree), `broker`: RabbitMQ,
    `client`: this load tool, `other`: everything else (other users of the machine; a run with a
    large `other` share was measured on a busy machine). Processes that ended during the run count
    as `other`.
    """

    def __init__(self) -> None:
        self.result: dict | None = None
        # The run directory of tools/stack.sh (RUN_DIR, as there).
        self._pid_file = Path(os.environ.get("RUN_DIR") or PROJECT_DIR / ".run") / "supervisord.pid"

    def __enter__(self) -> "CpuMeter":
        self._start = (procs.machine_ticks(), procs.process_table())
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.result = self._measure()
        except (OSError, ValueError, IndexError) as exc:
            logger.warning("CPU accounting unavailable: %s", exc)

    def _measure(self) -> dict:
        (busy0, total0), before = self._start
        (busy1, total1), after = procs.machine_ticks(), procs.process_table()
        total = max(1, total1 - total0)

        def used(pids: set[int]) -> int:
            return sum(after[p][1] - (before[p][1] if p in before else 0) for p in pids if p in after)

        stack_roots = set()
        if self._pid_file.exists():
            stack_roots = {int(self._pid_file.read_text().strip() or 0)} & set(after)
        stack = procs.descendants(after, stack_roots) if stack_roots else set()
        broker = {pid for pid, (_, _, name) in after.items() if name == "beam.smp"} - stack
        client = {os.getpid()}
        busy = busy1 - busy0
        parts = {"stack": used(stack), "broker": used(broker), "client": used(client)}
        share = {name: round(100 * ticks / total, 1) for name, ticks in parts.items()}
        return {
            "cores": os.cpu_count(),
            "busy_pct": round(100 * busy / total, 1),
            **{f"{name}_pct": value for name, value in share.items()},
            "stack_pct": share["stack"] if stack else None,
            "other_pct": round(100 * max(0, busy - sum(parts.values())) / total, 1),
        }


def wait_for_quiet_machine(max_other_pct: float, timeout: float, window: float = 3.0) -> float | None:
    """Waits (up to `timeout` s) for a `window` in which other processes use under `max_other_pct`
    of the CPUs; returns the last share seen (None if it cannot be measured)."""
    deadline = time.monotonic() + timeout
    while True:
        with CpuMeter() as meter:
            time.sleep(window)
        if meter.result is None:
            return None
        other = meter.result["other_pct"]
        if other <= max_other_pct or time.monotonic() > deadline:
            return other
