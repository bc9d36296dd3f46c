"""More than one machine, on this one: a three-node RabbitMQ cluster and a SeaweedFS cluster of the
tests' own (private names, loopback addresses, ports and data), and the system against them."""

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.broker_cluster import BrokerCluster
from harness.private_broker import PrivateBroker
from harness.processes import PROJECT_DIR

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


def report_figures(name: str, figures: dict, headline: str, capsys: pytest.CaptureFixture) -> None:
    """Keeps a cluster test's measured figures (results/cluster/<name>.json) and prints them with
    `headline` in the test run's output, captured or not."""
    figures = {**figures, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    with capsys.disabled():
        print(f"\n{headline}; figures in {path}")
