"""Fixtures shared by every suite that runs the system on real services."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import BROKER, BrokerEndpoint, BrokerVhost
from harness.objectstore import PrivateObjectStore
from harness.private_broker import PrivateBroker, rabbitmq4_root
from harness.processes import PROJECT_DIR
from harness.system import System, build_system

# The brokers a test marked `every_broker` runs on: the machine's RabbitMQ (3.10, Debian 12's) and
# a private RabbitMQ 4 node (the series compose runs) from the root tools/rabbitmq4_root.sh builds.
BROKER_SERIES = ("rabbitmq3", "rabbitmq4")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_series" in metafunc.fixturenames and metafunc.definition.get_closest_marker("every_broker"):
        metafunc.parametrize("broker_series", BROKER_SERIES, indirect=True)


@pytest.fixture
def broker_series(request: pytest.FixtureRequest) -> str:
    """Which RabbitMQ the test's systems use: the machine's unless the test is marked `every_broker`."""
    return getattr(request, "param", "rabbitmq3")


@pytest.fixture(scope="session")
def rabbitmq4_root_dir() -> Path:
    """The root RabbitMQ 4 nodes run from; without it (no debootstrap, no network) the tests fail, loudly."""
    try:
        return rabbitmq4_root()
    except RuntimeError as exc:
        pytest.fail(f"no RabbitMQ 4 to test on: {exc}")


@pytest.fixture(scope="session")
def rabbitmq4(rabbitmq4_root_dir: Path) -> Iterator[PrivateBroker]:
    """One RabbitMQ 4 node for the session; each system on it has a vhost of its own."""
    node = PrivateBroker(root=rabbitmq4_root_dir)
    try:
        node.start()
        yield node
    finally:
        node.remove()


@pytest.fixture
def broker(broker_series: str, request: pytest.FixtureRequest) -> BrokerEndpoint:
    if broker_series == "rabbitmq4":
        return request.getfixturevalue("rabbitmq4").endpoint
    return BROKER


@pytest.fixture
def private_broker(broker_series: str, request: pytest.FixtureRequest) -> Iterator[PrivateBroker]:
    """A node of the test's own, of the series the test runs on, that it may stop and start."""
    if broker_series == "rabbitmq4":
        broker = PrivateBroker(root=request.getfixturevalue("rabbitmq4_root_dir"))
    elif PrivateBroker.available():
        broker = PrivateBroker()
    else:
        pytest.fail("rabbitmq-server is not installed; .ci/run installs it")
    try:
        broker.start()
        yield broker
    finally:
        broker.remove()


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
def make_system(
    s3_endpoint: str, tmp_path: Path, broker: BrokerEndpoint, request: pytest.FixtureRequest
) -> Iterator:
    """A factory for systems of a test's own (other workers, settings or broker); stopped after it.

    Their vhosts are on `broker`: RabbitMQ 4 as well as the machine's for tests marked `every_broker`.

    On failure, the services' logs are printed with the test's report.
    """
    built: list[tuple[System, bool]] = []

    def make(vhost: BrokerVhost | None = None, s3: str | None = None, **options) -> System:
        own_vhost = vhost is None
        vhost = vhost or BrokerVhost(endpoint=broker).create()
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
