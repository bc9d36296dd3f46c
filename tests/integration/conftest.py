"""The system on real services: RabbitMQ (a private vhost), SeaweedFS over S3, and the API,
workers and notifier as processes, exactly as `make run` starts them."""

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from common.storage import ObjectStore
from tests.support.broker import BrokerVhost
from tests.support.objectstore import S3_KEYS, PrivateObjectStore, object_store
from tests.support.processes import (
    PROJECT_DIR,
    ServiceProcess,
    start_api,
    start_notifier,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private SeaweedFS instance for the test session."""
    store = PrivateObjectStore(tmp_path_factory.mktemp("s3")).start()
    try:
        yield store.endpoint
    finally:
        store.stop()


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

    @property
    def store(self) -> ObjectStore:
        return object_store(self.env["S3_ENDPOINT"], self.env["S3_BUCKET"])

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
        "WEBHOOK_SECRET": "test-webhook-secret",
        "WEBHOOK_BACKOFF_S": "0.1",
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
    system = System(vhost, system_env(vhost, s3_endpoint, **env), log_dir)
    try:
        _, system.api_url = system.start_api("api")
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


@pytest.fixture(scope="module")
def system(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """API, two workers and the notifier on a fresh vhost and bucket, shared by a test module."""
    vhost = BrokerVhost().create()
    log_dir = tmp_path_factory.mktemp("logs")
    try:
        system = build_system(vhost, s3_endpoint, log_dir)
        yield system
        system.stop()
        _keep_logs(log_dir)
    finally:
        vhost.delete()


@pytest.fixture
def make_system(s3_endpoint: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """A factory for systems of a test's own (other workers, settings or broker); stopped after it.

    On failure, the services' logs are printed with the test's report.
    """
    built: list[tuple[System, bool]] = []

    def make(vhost: BrokerVhost | None = None, s3: str | None = None, **options) -> System:
        own_vhost = vhost is None
        vhost = vhost or BrokerVhost().create()
        system = build_system(vhost, s3 or s3_endpoint, tmp_path, **options)
        built.append((system, own_vhost))
        return system

    yield make
    for system, own_vhost in built:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            print(system.logs())
        system.stop()
        if own_vhost:
            system.vhost.delete()
    _keep_logs(tmp_path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _keep_logs(log_dir: Path) -> None:
    if os.environ.get("KEEP_TEST_LOGS"):
        shutil.copytree(log_dir, Path(os.environ["KEEP_TEST_LOGS"]) / log_dir.name, dirs_exist_ok=True)


@pytest.fixture
def sample_jpg() -> Path:
    return PROJECT_DIR / "test_images" / "sample.jpg"


@pytest.fixture
def corrupted_jpg() -> Path:
    return PROJECT_DIR / "test_images" / "corrupted.jpg"
