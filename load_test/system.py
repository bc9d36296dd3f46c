"""The system under test as the load tools see it: the work queue's depth and consumers, and the
number of workers (set through the process manager natively, or docker compose).

Counts come from two places. An AMQP passive declare gives the exact number of ready messages and
of consumers at that instant. The management API (`GET /api/queues/{vhost}/images.jobs.work`) adds
the unacknowledged count (messages a worker holds), but its statistics are refreshed only every
`collect_statistics_interval` (5 s by default), so it is not used for anything time-critical.
"""

import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pika
from pika.exceptions import AMQPError

from common.amqp import connection_parameters
from common.settings import Settings
from common.topology import WORK_QUEUE
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
        self._http = httpx.Client(
            base_url=management_url or settings.management_url,
            auth=(settings.rabbitmq_user, settings.rabbitmq_password),
            timeout=5,
        )

    def counts(self) -> tuple[int, int]:
        """(ready messages, consumers) of the queue, exact, over AMQP; reconnects once if needed."""
        for attempt in (1, 2):
            try:
                if self._connection is None or self._connection.is_closed:
                    self._connection = pika.BlockingConnection(
                        connection_parameters(self.settings, "load-test")
                    )
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
        vhost = quote(self.settings.rabbitmq_vhost, safe="")
        response = self._http.get(f"/queues/{vhost}/{quote(self.queue, safe='')}")
        response.raise_for_status()
        return response.json()

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
        self._http.close()

    def _close_connection(self) -> None:
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.close()
            except AMQPError:
                pass
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
