"""What a cluster test counts to prove every job completed exactly once.

- The events: a quorum queue of the test's own, bound to `images.events` like the notifier's,
  collects every `job.completed` / `job.failed` the workers publish; it is replicated, so it
  survives the node that is stopped. Read at the end, it gives the events per job.
- The workers' JSON logs: per job, how often a worker started processing it, how often one
  committed a result (`completed: ...`), and how often one abandoned a delivery lost with its
  connection. A job run to completion twice shows as two commits, and two events.
"""

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pika

from common.messages import JobEvent
from common.topology import EVENTS_EXCHANGE

# About 150 ms of Pillow per job here: a few hundred jobs keep two workers busy for a while.
LOAD_OPERATIONS = "filter(name=sharpen),resize(width=400)"
WORKERS = ("worker-a", "worker-b")
# One test client sends the whole load: the per-client upload limit (RATE_LIMIT_UPLOADS) is raised
# for it, and a 429 is still waited out as a client would.
LOAD_RATE_LIMIT = "100000/minute"


def submit_jobs(api_url: str, image: Path, operations: str, count: int, concurrency: int = 4) -> list[str]:
    """Uploads `count` jobs; a 503 (broker or storage unreachable) or a 429 is retried after its
    Retry-After, as a client would."""
    data = image.read_bytes()

    def one(_: int) -> str:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            for _attempt in range(30):
                response = client.post(
                    "/upload", files={"file": (image.name, data)}, data={"operations": operations}
                )
                if response.status_code == 202:
                    return response.json()["job_id"]
                assert response.status_code in (429, 503), response.text
                time.sleep(min(float(response.headers.get("Retry-After", "1")), 10))
        raise AssertionError(f"upload refused 30 times: {response.status_code} {response.text}")

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def declare_event_capture(connection: pika.BlockingConnection, queue: str) -> None:
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="job.*")


def drain_events(connection: pika.BlockingConnection, queue: str) -> list[JobEvent]:
    channel = connection.channel()
    events = []
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return events
        events.append(JobEvent.model_validate_json(body))


@dataclass
class WorkerLedger:
    starts: Counter = field(default_factory=Counter)
    commits: Counter = field(default_factory=Counter)
    abandoned: Counter = field(default_factory=Counter)
    republished: Counter = field(default_factory=Counter)
    broker_nodes: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, logs: list[str]) -> "WorkerLedger":
        ledger = cls()
        for text in logs:
            for line in text.splitlines():
                if not line.startswith("{"):
                    continue
                entry = json.loads(line)
                message, job_id = entry.get("message", ""), entry.get("job_id")
                if message.startswith("processing (attempt"):
                    ledger.starts[job_id] += 1
                elif message.startswith("completed:"):
                    ledger.commits[job_id] += 1
                elif message.startswith("abandoned:"):
                    ledger.abandoned[job_id] += 1
                elif message.startswith("already completed"):
                    ledger.republished[job_id] += 1
                elif "connected to broker node" in message:
                    ledger.broker_nodes.append(message.rsplit(" ", 1)[-1])
        return ledger


def per_job(counter: Counter, jobs: list[str]) -> Counter:
    """How many jobs have each count (0, 1, 2 ...) in `counter`."""
    return Counter(counter.get(job_id, 0) for job_id in jobs)


def notified_at(notifier_log: str) -> list[float]:
    """When the notifier handled each completion event (epoch seconds), from its JSON log."""
    times = []
    for line in notifier_log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if " completed by " in entry.get("message", ""):
                times.append(datetime.fromisoformat(entry["ts"]).timestamp())
    return times


def assert_completed_once(
    connection: pika.BlockingConnection, capture: str, jobs: list[str], worker_logs: list[str]
) -> tuple[Counter, "WorkerLedger"]:
    """Every job in `jobs` completed exactly once: one `job.completed` change in the capture queue
    and one committed result in the workers' logs; no `job.failed`. Returns both counts.

    A publish whose confirm was lost with the broker node is sent again (at least once): the same
    change twice, with the same revision. A job processed twice would complete at two revisions."""
    events = drain_events(connection, capture)
    changes = {(e.job_id, e.revision) for e in events if e.event == "job.completed"}
    completed = Counter(job_id for job_id, _revision in changes)
    assert [e for e in events if e.event != "job.completed"] == []
    assert set(completed) == set(jobs)
    assert per_job(completed, jobs) == {1: len(jobs)}, "a job completed more than once"
    ledger = WorkerLedger.read(worker_logs)
    assert per_job(ledger.commits, jobs) == {1: len(jobs)}, "a job's result was committed twice"
    return completed, ledger
