"""Fixtures shared by every suite that runs the system on real services."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import BrokerVhost
from harness.objectstore import PrivateObjectStore
from harness.processes import PROJECT_DIR
from harness.system import System, build_system


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private SeaweedFS instance for the test session."""
    store = PrivateObjectStore(tmp_path_factory.mktemp("s3")).start()
    try:
        yield store.endpoint
    finally:
        store.stop()


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
