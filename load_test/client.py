"""The load tools' client: upload images, follow every job to its end, one `JobResult` per job.

    client = LoadClient("http://localhost:8000", settings, concurrency=8)
    results = client.run_sync([Submission(path) for path in images])

Following a job
    events (default)  a private, exclusive queue bound to the events exchange (`job.*`) receives
                      every `job.completed` / `job.failed` as the worker publishes it; the job's
                      record is then read once with GET /status. The client learns of the end
                      within milliseconds (see `detection_lag_ms` in the summary) and sends almost no
                      requests while jobs wait, so following does not load the API. A job with no
                      event for `backstop_s` is polled anyway (a lost event cannot hang the run).
    poll              GET /status/{id} every `poll_interval` s per job, at most `poll_concurrency`
                      requests in flight. `latency_ms` is then late by up to one interval plus a
                      request; with many queued jobs the polls compete with the system for CPU.

Uploads past the API's rate limit (RATE_LIMIT_UPLOADS, per client) are sent again once the
`Retry-After` of the 429 has passed; the API refuses them before reading the body and closes the
connection, so a large upload may see the connection closed instead of the 429 and is sent again a
second later. The wait counts in the job's upload time and latency, and in `throttled_s`.

A job is lost when it has neither completed nor failed `timeout` s after its upload; its last
known status is kept in `error`.
"""

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from pika.exceptions import AMQPError

from common.amqp import connect
from common.settings import Settings
from common.topology import EVENTS_EXCHANGE
from load_test.results import COMPLETED, FAILED, LOST, REJECTED, JobResult, epoch

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
TERMINAL = (COMPLETED, FAILED)
# What an upload refused before its body was read can see instead of the answer.
REFUSED_MID_UPLOAD = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
RETRY_AFTER_DEFAULT_S = 1.0
EVENTS, POLL = "events", "poll"


@dataclass(frozen=True)
class Submission:
    """One upload: `image` sent `at` seconds after the run starts (as soon as a slot is free)."""

    image: Path
    at: float = 0.0
    burst: int | None = None


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


class EventListener:
    """Receives job events on a background thread; calls `on_event(job_id, received_at)`."""

    def __init__(self, settings: Settings, on_event: Callable[[str, float], None]) -> None:
        self._settings = settings
        self._on_event = on_event
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="event-listener", daemon=True)

    def start(self, timeout: float = 10) -> None:
        """Returns once the queue is bound, so no event of a job uploaded afterwards is missed."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the event listener did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            connection = connect(self._settings.broker, "load-test-events")
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="job.*")
            channel.basic_consume(queue, self._message, auto_ack=True)
        except AMQPError as exc:
            self._error = RuntimeError(f"cannot subscribe to {EVENTS_EXCHANGE}: {exc!r}")
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.2)
        except AMQPError as exc:
            logger.warning("event listener stopped: %r (the status backstop takes over)", exc)
        finally:
            if connection.is_open:
                connection.close()

    def _message(self, channel, method, properties, body: bytes) -> None:
        received_at = time.time()
        try:
            job_id = json.loads(body)["job_id"]
        except (ValueError, KeyError, TypeError):
            return
        self._on_event(job_id, received_at)


class LoadClient:
    """Uploads submissions with bounded concurrency and follows each job to its end."""

    def __init__(
        self,
        api_url: str,
        settings: Settings,
        *,
        operations: str | None = None,
        concurrency: int = 8,
        follow: str = EVENTS,
        poll_interval: float = 0.5,
        poll_concurrency: int = 4,
        backstop_s: float = 10.0,
        timeout: float = 600.0,
        on_uploaded: Callable[[JobResult], None] | None = None,
        on_finished: Callable[[JobResult], None] | None = None,
    ) -> None:
        if follow not in (EVENTS, POLL):
            raise ValueError(f"follow must be {EVENTS!r} or {POLL!r}")
        self.api_url = api_url.rstrip("/")
        self.settings = settings
        self.operations = operations
        self.concurrency = concurrency
        self.follow = follow
        self.poll_interval = poll_interval
        self.poll_concurrency = poll_concurrency
        self.backstop_s = backstop_s
        self.timeout = timeout
        self._on_uploaded = on_uploaded or (lambda job: None)
        self._on_finished = on_finished or (lambda job: None)
        self._ended: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Event] = {}

    def run_sync(self, submissions: Sequence[Submission]) -> list[JobResult]:
        return asyncio.run(self.run(submissions))

    async def run(self, submissions: Sequence[Submission]) -> list[JobResult]:
        """Every submission's JobResult, in submission order."""
        loop = asyncio.get_running_loop()
        listener = None
        if self.follow == EVENTS:
            listener = EventListener(
                self.settings, lambda job_id, at: loop.call_soon_threadsafe(self._event, job_id, at)
            )
            try:
                await asyncio.to_thread(listener.start)
            except (RuntimeError, TimeoutError) as exc:
                logger.warning("%s; following jobs by polling instead", exc)
                self.follow, listener = POLL, None
        self._upload_slots = asyncio.Semaphore(self.concurrency)
        self._status_slots = asyncio.Semaphore(self.poll_concurrency)
        limits = httpx.Limits(max_connections=self.concurrency + self.poll_concurrency)
        try:
            async with httpx.AsyncClient(base_url=self.api_url, timeout=120, limits=limits) as http:
                self._http = http
                start = time.monotonic()
                return list(await asyncio.gather(*(self._job(s, start) for s in submissions)))
        finally:
            if listener is not None:
                await asyncio.to_thread(listener.stop)

    def _event(self, job_id: str, received_at: float) -> None:
        self._ended.setdefault(job_id, received_at)
        if job_id in self._waiters:
            self._waiters[job_id].set()

    async def _job(self, submission: Submission, start: float) -> JobResult:
        delay = start + submission.at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._upload_slots:
            job = await self._upload(submission)
        self._on_uploaded(job)
        if job.status != REJECTED:
            await self._follow(job)
        self._on_finished(job)
        return job

    async def _upload(self, submission: Submission) -> JobResult:
        data = await asyncio.to_thread(submission.image.read_bytes)
        job = JobResult(
            image=submission.image.name,
            image_bytes=len(data),
            submitted_at=time.time(),
            burst=submission.burst,
        )
        form = {"operations": self.operations} if self.operations else {}
        deadline = job.submitted_at + self.timeout
        while True:
            try:
                response = await self._http.post(
                    "/upload", files={"file": (submission.image.name, data)}, data=form
                )
            except REFUSED_MID_UPLOAD as exc:
                wait, refusal = RETRY_AFTER_DEFAULT_S, f"upload: {exc!r}"
            except httpx.HTTPError as exc:
                job.status, job.error = REJECTED, f"upload: {exc!r}"
                return job
            else:
                if response.status_code != 429:
                    break
                wait, refusal = retry_after(response), f"upload: HTTP 429 {response.text[:200]}"
            if time.time() + wait > deadline:
                job.status, job.error = REJECTED, refusal
                return job
            job.throttled_s = round(job.throttled_s + wait, 3)
            await asyncio.sleep(wait)
        job.uploaded_at = time.time()
        if response.status_code != 202:
            job.status, job.error = REJECTED, f"upload: HTTP {response.status_code} {response.text[:200]}"
            return job
        job.job_id = response.json()["job_id"]
        return job

    async def _follow(self, job: JobResult) -> None:
        assert job.job_id is not None and job.uploaded_at is not None
        deadline = job.uploaded_at + self.timeout
        waiter = self._waiters.setdefault(job.job_id, asyncio.Event())
        if job.job_id in self._ended:
            waiter.set()
        last_status = "never read"
        try:
            while True:
                remaining = max(0.0, deadline - time.time())
                if self.follow == EVENTS:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter.wait(), min(self.backstop_s, remaining))
                else:
                    await asyncio.sleep(min(self.poll_interval, remaining))
                record = await self._status(job.job_id)
                if record is not None:
                    last_status = record.get("status", "?")
                    if last_status in TERMINAL:
                        job.observe_end(self._ended.get(job.job_id) or time.time())
                        fill_from_record(job, record)
                        return
                if time.time() >= deadline:
                    job.status = LOST
                    job.error = f"still {last_status} {self.timeout:g} s after its upload"
                    return
        finally:
            self._waiters.pop(job.job_id, None)

    async def _status(self, job_id: str) -> dict | None:
        async with self._status_slots:
            try:
                response = await self._http.get(f"/status/{job_id}")
            except httpx.HTTPError as exc:
                logger.warning("status of %s: %r", job_id, exc)
                return None
        if response.status_code != 200:
            logger.warning("status of %s: HTTP %s", job_id, response.status_code)
            return None
        return response.json()


def retry_after(response: httpx.Response) -> float:
    """The seconds a 429 asks to wait (Retry-After in seconds; 1 s if absent or unreadable)."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return RETRY_AFTER_DEFAULT_S
    return min(max(seconds, 0.1), 60.0) if math.isfinite(seconds) else RETRY_AFTER_DEFAULT_S


def fill_from_record(job: JobResult, record: dict) -> None:
    """Copies what the job record (GET /status) says about a finished job into its JobResult."""
    job.status = record["status"]
    job.created_at = epoch(record.get("created_at"))
    job.started_at = epoch(record.get("started_at"))
    job.finished_at = epoch(record.get("finished_at"))
    job.worker = record.get("worker")
    job.attempts = record.get("attempts")
    original = record.get("original") or {}
    if original.get("width") and original.get("height"):
        job.pixels = original["width"] * original["height"]
    if record["status"] == FAILED:
        job.error = record.get("error_reason") or record.get("error")
