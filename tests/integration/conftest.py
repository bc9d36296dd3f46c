"""The system on real services: RabbitMQ (a private vhost), SeaweedFS over S3, and the API,
workers and notifier as processes, exactly as `make run` starts them."""

import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.broker import BROKER, BrokerVhost
from tools.objectstore import ports_used
from tests.support.processes import (
    PROJECT_DIR,
    ServiceProcess,
    free_port,
    port_open,
    start_api,
    start_notifier,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

S3_KEYS = {"S3_ACCESS_KEY": "imgpipe-test", "S3_SECRET_KEY": "imgpipe-test-secret"}


def free_s3_port() -> int:
    """An S3 port whose derived SeaweedFS ports (tools/objectstore.py) are all free."""
    rng = random.Random()
    for _ in range(50):
        candidate = rng.randrange(20000, 29000)
        if not any(port_open(port) for port in ports_used(candidate)):
            return candidate
    raise RuntimeError("no free port range for SeaweedFS")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private SeaweedFS instance for the test session."""
    data_dir = tmp_path_factory.mktemp("s3")
    port = free_s3_port()
    log = open(data_dir.parent / "seaweedfs.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.objectstore", "--dir", str(data_dir), "--port", str(port)],
        cwd=PROJECT_DIR, env={**os.environ, **S3_KEYS}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: port_open(port), 60, "SeaweedFS to listen")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@dataclass
class System:
    """One isolated copy of the system: its own vhost, bucket, API, workers and notifier."""

    vhost: BrokerVhost
    env: dict[str, str]
    log_dir: Path
    api_url: str = ""
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=30)

    def start_worker(self, name: str) -> ServiceProcess:
        self.services[name] = start_worker(self.env, self.log_dir, name)
        return self.services[name]

    def start_api(self, name: str) -> tuple[ServiceProcess, str]:
        service, url = start_api(self.env, self.log_dir, name)
        self.services[name] = service
        return service, url

    def upload(self, path: Path, **form: str) -> httpx.Response:
        with self.http as client, open(path, "rb") as handle:
            return client.post("/upload", files={"file": (path.name, handle)}, data=form)

    def status(self, job_id: str) -> dict:
        with self.http as client:
            response = client.get(f"/status/{job_id}")
            response.raise_for_status()
            return response.json()

    def wait_finished(self, job_id: str, timeout: float = 60) -> dict:
        return wait_for(
            lambda: (s := self.status(job_id))["status"] in ("completed", "failed") and s,
            timeout, f"job {job_id} to finish",
        )

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{s.log()[-4000:]}" for name, s in self.services.items())

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()


def system_env(vhost: str, s3_endpoint: str, **overrides: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "S3_", "WORKER_"))},
        "RABBITMQ_HOST": BROKER["host"],
        "RABBITMQ_PORT": str(BROKER["port"]),
        "RABBITMQ_VHOST": vhost,
        "S3_ENDPOINT": s3_endpoint,
        "S3_BUCKET": f"test-{uuid.uuid4().hex[:12]}",
        **S3_KEYS,
        "RETRY_BASE_DELAY_MS": "200",
        "SHUTDOWN_GRACE_S": "10",
        "WEBHOOK_SECRET": "test-webhook-secret",
        "WEBHOOK_BACKOFF_S": "0.1",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


@pytest.fixture(scope="module")
def system(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """API, two workers and the notifier on a fresh vhost and bucket, shared by a test module."""
    vhost = BrokerVhost().create()
    log_dir = tmp_path_factory.mktemp("logs")
    system = System(vhost, system_env(vhost.name, s3_endpoint), log_dir)
    try:
        _, system.api_url = system.start_api("api")
        system.start_worker("worker-a")
        system.start_worker("worker-b")
        system.services["notifier"] = start_notifier(system.env, log_dir)
        vhost.wait_for_consumers("images.jobs.work", 2)
        vhost.wait_for_consumers("images.notifications", 1)
        yield system
    except BaseException:
        print(system.logs())
        raise
    finally:
        system.stop()
        if os.environ.get("KEEP_TEST_LOGS"):
            shutil.copytree(log_dir, Path(os.environ["KEEP_TEST_LOGS"]) / log_dir.name, dirs_exist_ok=True)
        vhost.delete()


@pytest.fixture
def sample_jpg() -> Path:
    return PROJECT_DIR / "test_images" / "sample.jpg"


@pytest.fixture
def corrupted_jpg() -> Path:
    return PROJECT_DIR / "test_images" / "corrupted.jpg"


__all__ = ["System", "free_port"]
