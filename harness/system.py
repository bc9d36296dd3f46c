"""One isolated copy of the system on real services, as tests and the benchmark start it:
RabbitMQ (a private vhost), SeaweedFS over S3, and the API, workers and notifier as processes,
exactly as `make run` starts them."""

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.jobs import JobRecord, JobStatus, JobStore, OriginalInfo, original_key
from common.storage import ObjectStore
from harness.broker import BrokerVhost
from harness.objectstore import S3_KEYS, object_store
from harness.processes import (
    ServiceProcess,
    free_port,
    start_api,
    start_notifier,
    start_worker,
    wait_for,
)
from harness.webhooks import TEST_WEBHOOK_SECRET


@dataclass
class System:
    """One isolated copy of the system: its own vhost, bucket, API, workers and notifier."""

    vhost: BrokerVhost
    env: dict[str, str]
    log_dir: Path
    api_url: str = ""
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    # The API key the helpers below send (None: none), for systems that require one.
    key: str | None = None

    @property
    def http(self) -> httpx.Client:
        return self.client(self.key)

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.api_url, timeout=30, headers=headers)

    @property
    def store(self) -> ObjectStore:
        return object_store(self.env["S3_ENDPOINT"], self.env["S3_BUCKET"])

    def start_worker(self, name: str) -> ServiceProcess:
        self.services[name] = start_worker(self.env, self.log_dir, name)
        return self.services[name]

    def start_api(self, name: str, port: int | None = None) -> tuple[ServiceProcess, str]:
        service, url = start_api(self.env, self.log_dir, name, port)
        self.services[name] = service
        return service, url

    def upload(self, path: Path, key: str | None = None, **form: str) -> httpx.Response:
        with self.client(key or self.key) as client, open(path, "rb") as handle:
            return client.post("/upload", files={"file": (path.name, handle)}, data=form)

    def status(self, job_id: str, key: str | None = None) -> dict:
        with self.client(key or self.key) as client:
            response = client.get(f"/status/{job_id}")
            response.raise_for_status()
            return response.json()

    def wait_finished(self, job_id: str, timeout: float = 60, key: str | None = None) -> dict:
        return wait_for(
            lambda: (s := self.status(job_id, key))["status"] in ("completed", "failed", "cancelled") and s,
            timeout, f"job {job_id} to finish",
        )

    def submit_directly(self, data: bytes, operations: list, width: int, height: int, **record: object) -> str:
        """What another client of the broker could do: put an original and a job record, publish
        a job message, all without the API's checks."""
        job_id = uuid.uuid4().hex
        self.store.put(original_key(job_id), data, "image/png")
        job = JobRecord(
            job_id=job_id, status=JobStatus.QUEUED, operations=operations, quality=85,
            original=OriginalInfo(key=original_key(job_id), format="png", width=width, height=height, bytes=len(data)),
            **record,
        )
        JobStore(self.store).save(job)
        self.publish_job(job.to_message().model_dump_json().encode(), job_id)
        return job_id

    def publish_job(self, body: bytes, message_id: str | None = None) -> None:
        self.vhost.publish("images.jobs", "job", body, message_id=message_id)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{s.log()[-4000:]}" for name, s in self.services.items())

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()


def system_env(vhost: BrokerVhost, s3_endpoint: str, **overrides: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "S3_", "WORKER_"))},
        "RABBITMQ_HOST": vhost.endpoint.host,
        "RABBITMQ_PORT": str(vhost.endpoint.port),
        "RABBITMQ_MANAGEMENT_PORT": str(vhost.endpoint.management_port),
        "RABBITMQ_VHOST": vhost.name,
        "S3_ENDPOINT": s3_endpoint,
        "S3_BUCKET": f"test-{uuid.uuid4().hex[:12]}",
        **S3_KEYS,
        "RETRY_BASE_DELAY_MS": "200",
        "SHUTDOWN_GRACE_S": "10",
        "WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "WEBHOOK_BACKOFF_S": "0.1",
        # The tests' webhook receivers listen on loopback; nothing else non-public is reachable.
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


def build_system(
    vhost: BrokerVhost,
    s3_endpoint: str,
    log_dir: Path,
    workers: tuple[str, ...] = ("worker-a", "worker-b"),
    notifier: bool = True,
    **env: str,
) -> System:
    """Starts the API, the workers and (optionally) the notifier; returns once they consume."""
    api_port = free_port()
    # The API's public address is one of the system's own endpoints webhooks may never reach.
    env.setdefault("API_PUBLIC_URL", f"http://127.0.0.1:{api_port}")
    system = System(vhost, system_env(vhost, s3_endpoint, **env), log_dir)
    try:
        _, system.api_url = system.start_api("api", api_port)
        for name in workers:
            system.start_worker(name)
        if notifier:
            system.services["notifier"] = start_notifier(system.env, log_dir)
        vhost.wait_for_consumers("images.jobs.work", len(workers))
        if notifier:
            vhost.wait_for_consumers("images.notifications", 1)
    except BaseException:
        print(system.logs())
        system.stop()
        raise
    return system


