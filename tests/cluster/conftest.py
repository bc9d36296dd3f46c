"""More than one machine, on this one: a three-node RabbitMQ cluster and a SeaweedFS cluster of the
tests' own (private names, loopback addresses, ports and data), and the system against them."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker_cluster import BrokerCluster
from tests.support.objectstore import PrivateObjectStore
from tests.support.private_broker import PrivateBroker
from tests.support.processes import PROJECT_DIR

pytestmark = pytest.mark.integration

RESULTS_DIR = Path(os.environ.get("CLUSTER_RESULTS_DIR", PROJECT_DIR / "results" / "cluster"))


@pytest.fixture(scope="module")
def broker_cluster() -> Iterator[BrokerCluster]:
    if not PrivateBroker.available():
        pytest.fail("rabbitmq-server is not installed; .ci/run installs it")
    cluster = BrokerCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def single_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = PrivateObjectStore(tmp_path_factory.mktemp("s3")).start()
    try:
        yield store.endpoint
    finally:
        store.stop()


def record_figures(name: str, figures: dict) -> Path:
    """Keeps a cluster test's measured figures (results/cluster/<name>.json) and returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return path
