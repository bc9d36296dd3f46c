"""The monitoring profile, checked without Docker: every metric the Grafana dashboard queries is one
the API exports, Prometheus scrapes what compose runs, and Grafana's provisioning finds its files.

The exported names come from the code itself: the API's registry is rendered from made-up worker
snapshots, broker figures and uploads, then parsed as Prometheus would.
"""

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from api.metrics import WorkerStatsView, build_registry
from common.observability.management import BrokerStats, QueueStats
from common.observability.stats import Histogram, WorkerSnapshot, aggregate
from tests.support.dashboard import DASHBOARD, exposition_names, metric_names, panel_queries, panels

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
GRAFANA = MONITORING / "grafana"

# The five numbers, each with the metric its panel must be built on.
FIVE_NUMBERS = {
    "Throughput": "imgpipe_jobs_completed_total",
    "Latency p95": "imgpipe_job_latency_seconds_bucket",
    "Queue size": "imgpipe_queue_messages_ready",
    "Worker utilization": "imgpipe_worker_utilization_avg",
    "Failed tasks (1 h)": "imgpipe_jobs_failed_total",
}


def fake_snapshot(worker: str, updated_at: float) -> WorkerSnapshot:
    histogram = Histogram()
    histogram.observe(0.3)
    return WorkerSnapshot(
        worker=worker, instance=f"{worker}-1", host="h", pid=1, interval_s=5, started_at=updated_at - 60,
        updated_at=updated_at, wall_s=60, busy_s=6, completed={"resize,watermark": 3},
        failed={"truncated": {"resize": 1}}, retried=1,
        processing_s=histogram, latency_s=histogram.model_copy(deep=True),
    )


@pytest.fixture(scope="module")
def exported() -> set[str]:
    now = time.time()
    totals = aggregate([fake_snapshot("worker-a", now), fake_snapshot("worker-b", now)], now)
    broker = BrokerStats(True, queues=[
        QueueStats("images.jobs.work", "work", ready=2, consumers=2, consumer_utilisation=0.9),
        QueueStats("images.jobs.dead", "dead_letter", ready=1),
    ])
    registry, uploads = build_registry(lambda: WorkerStatsView(totals, True, None, now), lambda: broker)
    uploads.accepted(["resize", "watermark"])
    uploads.refused(415)
    return exposition_names(generate_latest(registry).decode())


@pytest.fixture(scope="module")
def queries() -> dict[str, list[str]]:
    return panel_queries(DASHBOARD)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_dashboard_panels_each_have_a_query(queries: dict[str, list[str]]) -> None:
    assert queries, "no panels"
    empty = [t for t, exprs in queries.items() if not exprs or not all(metric_names(e) for e in exprs)]
    assert empty == []


def test_dashboard_queries_name_only_exported_metrics(
    queries: dict[str, list[str]], exported: set[str]
) -> None:
    unknown = {
        title: sorted(set().union(*(metric_names(e) for e in exprs)) - exported)
        for title, exprs in queries.items()
    }
    assert {title: names for title, names in unknown.items() if names} == {}


def test_dashboard_check_rejects_a_metric_nobody_exports(exported: set[str]) -> None:
    assert metric_names("rate(imgpipe_jobs_vanished_total[1m])") - exported == {"imgpipe_jobs_vanished_total"}


def test_dashboard_shows_the_five_numbers(queries: dict[str, list[str]]) -> None:
    missing = {
        title: metric
        for title, metric in FIVE_NUMBERS.items()
        if not any(metric in metric_names(expr) for expr in queries.get(title, []))
    }
    assert missing == {}


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert {
        panel["datasource"]["uid"] for panel in panels(dashboard) if panel.get("type") != "row"
    } == {uid}


def test_prometheus_scrapes_compose_services_on_their_ports(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert targets == ["api:8000"]
    services = compose["services"]
    for target in targets:
        host, port = target.split(":")
        assert host in services
        # The API's container port, as its healthcheck and command use it.
        assert f"127.0.0.1:{port}/" in " ".join(services[host]["healthcheck"]["test"])


def test_compose_monitoring_profile_wires_prometheus_and_grafana(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        assert services[name]["profiles"] == ["monitoring"]
        assert f"127.0.0.1:{port}:{port}" in services[name]["ports"]
    prometheus_mounts = dict(v.rsplit(":", 2)[:2] for v in services["prometheus"]["volumes"])
    assert prometheus_mounts == {"./monitoring/prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml"}
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]

    grafana_mounts = dict(v.rsplit(":", 2)[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "imgpipe.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert grafana_mounts["./monitoring/grafana/dashboards"] == dashboards_path
    assert grafana_mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
