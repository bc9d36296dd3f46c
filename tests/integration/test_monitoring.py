"""/metrics, /stats and both monitors against real services: the numbers move by exactly what the
jobs did. The module has a system of its own (vhost, bucket), so every count starts at zero."""

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.broker import BrokerVhost
from harness.processes import PROJECT_DIR, free_port, wait_for
from harness.system import System, build_system
from tests.support.dashboard import metric_names, panel_queries

pytestmark = pytest.mark.integration

STATS_INTERVAL_S = "0.5"
WORK_QUEUE = "images.jobs.work"
OPERATIONS = "resize(width=200),watermark"


@pytest.fixture(scope="module")
def monitored(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """API, two workers and the notifier, with frequent statistics snapshots and JSON logs."""
    vhost = BrokerVhost().create()
    log_dir = tmp_path_factory.mktemp("monitoring-logs")
    FINISHED.update(completed=0, failed=0)
    try:
        system = build_system(vhost, s3_endpoint, log_dir, STATS_INTERVAL_S=STATS_INTERVAL_S, LOG_JSON="true")
        try:
            yield system
        finally:
            system.stop()
    finally:
        vhost.delete()


def get_stats(url: str) -> dict:
    response = httpx.get(f"{url}/stats", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def get_metrics(url: str) -> dict[str, float]:
    """Every sample as `name{label="value",...}` -> value (labels sorted), plus bare names summed."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
            samples[sample.name] = samples.get(sample.name, 0) + sample.value
    return samples


def wait_stats(system: System, predicate, what: str, timeout: float = 30, url: str | None = None) -> dict:
    return wait_for(lambda: (s := get_stats(url or system.api_url)) and predicate(s) and s, timeout, what)


def upload_jobs(system: System, count: int, operations: str = OPERATIONS) -> list[str]:
    job_ids = []
    for _ in range(count):
        response = system.upload(PROJECT_DIR / "test_images" / "sample.jpg", operations=operations)
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["job_id"])
    return job_ids


# Jobs of this module that finished, by status: what /stats must show once the snapshots catch up.
FINISHED = {"completed": 0, "failed": 0}


def finish_jobs(system: System, count: int) -> list[str]:
    job_ids = upload_jobs(system, count)
    statuses = [system.wait_finished(job_id) for job_id in job_ids]
    assert [s["status"] for s in statuses] == ["completed"] * count, statuses
    FINISHED["completed"] += count
    return job_ids


def settled_stats(system: System, url: str | None = None) -> dict:
    """/stats once every finished job of the module is counted (snapshots are written every 0.5 s)."""
    return wait_stats(
        system,
        lambda s: {k: s["jobs"][k] for k in FINISHED} == FINISHED,
        f"/stats to count {FINISHED}", url=url,
    )


def run_monitor(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"monitoring/{script}", *args], cwd=PROJECT_DIR, env=env,
        capture_output=True, text=True, timeout=60,
    )


def test_stats_start_at_zero_with_two_active_workers(make_system) -> None:
    # A system of its own: the module's system has run other tests' jobs, in whatever order.
    monitored = make_system(STATS_INTERVAL_S=STATS_INTERVAL_S)
    stats = wait_stats(monitored, lambda s: s["workers"]["active"] == 2, "two active workers")
    assert (stats["jobs"]["completed"], stats["jobs"]["failed"]) == (0, 0)
    assert {w["worker"] for w in stats["workers"]["list"]} == {"worker-a", "worker-b"}
    assert stats["sources"]["worker_stats"]["available"] is True
    assert stats["queues"]["available"] is True
    work = wait_stats(monitored, lambda s: s["queues"]["queues"][WORK_QUEUE]["consumers"] == 2, "2 consumers")
    assert work["queues"]["queues"][WORK_QUEUE]["exists"] is True
    assert set(work["queues"]["queues"]) >= {WORK_QUEUE, "images.jobs.dead", "images.notifications"}


def test_stats_count_completed_jobs_exactly(monitored: System) -> None:
    before = settled_stats(monitored)
    finish_jobs(monitored, 6)

    expected = before["jobs"]["completed"] + 6
    counted = wait_stats(monitored, lambda s: s["jobs"]["completed"] >= expected, f"{expected} completed")
    # Later snapshots must not count more: read again once every worker has written a snapshot
    # after that reading (and the API's cache has let them through).
    seen = max(w["updated_at"] for w in counted["workers"]["list"] if w["active"])
    stats = wait_stats(
        monitored,
        lambda s: all(w["updated_at"] > seen for w in s["workers"]["list"] if w["active"]),
        "a reading of later snapshots",
    )
    assert stats["jobs"]["completed"] == expected
    assert stats["jobs"]["failed"] == before["jobs"]["failed"]
    assert stats["jobs"]["completed_by_operations"]["resize,watermark"] == expected
    assert stats["jobs"]["submitted_here"] == before["jobs"]["submitted_here"] + 6
    assert stats["processing_s"]["count"] == stats["latency_s"]["count"] == expected
    assert 0 < stats["processing_s"]["p50"] <= stats["latency_s"]["p99"]
    assert stats["throughput"]["completed"] >= 6 and stats["throughput"]["completed_per_s"] > 0
    assert 0 < stats["workers"]["utilization_avg"] <= 1
    assert sum(w["completed"] for w in stats["workers"]["list"]) == expected

    metrics = wait_for(
        lambda: (m := get_metrics(monitored.api_url))["imgpipe_jobs_completed_total"] == expected and m,
        10, "/metrics to agree",
    )
    assert metrics['imgpipe_jobs_completed_total{operations="resize,watermark"}'] == expected
    assert metrics["imgpipe_job_processing_seconds_count"] == expected
    assert metrics["imgpipe_job_latency_seconds_count"] == expected
    assert metrics['imgpipe_job_latency_seconds_bucket{le="+Inf"}'] == expected
    assert metrics['imgpipe_jobs_submitted_total{operations="resize,watermark"}'] == expected
    assert metrics["imgpipe_workers_active"] == 2
    assert 0 < metrics["imgpipe_worker_utilization_avg"] <= 1


def test_stats_count_corrupted_image_as_failed_with_reason(monitored: System, corrupted_jpg: Path) -> None:
    before = settled_stats(monitored)
    response = monitored.upload(corrupted_jpg, operations="resize")
    assert response.status_code == 202, response.text
    status = monitored.wait_finished(response.json()["job_id"])
    assert status["status"] == "failed"
    FINISHED["failed"] += 1
    reason = status["error_reason"]

    stats = wait_stats(monitored, lambda s: s["jobs"]["failed"] > before["jobs"]["failed"], "the failure")
    assert stats["jobs"]["failed"] == before["jobs"]["failed"] + 1
    assert stats["jobs"]["failed_by_reason"] == {reason: 1}
    assert stats["jobs"]["failed_by_operations"] == {"resize": 1}
    assert stats["jobs"]["completed"] == before["jobs"]["completed"]
    assert stats["processing_s"]["count"] == stats["jobs"]["completed"]
    metrics = wait_for(
        lambda: (m := get_metrics(monitored.api_url))["imgpipe_jobs_failed_total"] == 1 and m, 10, "/metrics"
    )
    assert metrics[f'imgpipe_jobs_failed_total{{operations="resize",reason="{reason}"}}'] == 1
    dead = wait_stats(monitored, lambda s: s["queues"]["dead_letter_messages"] == 1, "the dead letter", 20)
    assert dead["queues"]["queues"]["images.jobs.dead"]["ready"] == 1


def test_uploads_rejected_are_counted_by_reason(monitored: System, tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    assert monitored.upload(not_an_image).status_code == 415
    sample = PROJECT_DIR / "test_images" / "sample.jpg"
    assert monitored.upload(sample, operations="explode").status_code == 422
    assert monitored.upload(sample, output_format="bmp").status_code == 422

    metrics = get_metrics(monitored.api_url)
    assert metrics['imgpipe_uploads_rejected_total{reason="unsupported_type",status="415"}'] == 1
    assert metrics['imgpipe_uploads_rejected_total{reason="invalid_request",status="422"}'] == 2
    assert get_stats(monitored.api_url)["api"]["rejected_by_reason"] == {
        "invalid_request/422": 2, "unsupported_type/415": 1,
    }


def test_metrics_expose_every_metric_the_dashboard_queries(monitored: System) -> None:
    response = httpx.get(f"{monitored.api_url}/metrics", timeout=10)
    # By the families the API declares, with or without samples yet: the test may run before any job.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = set()
    for family in text_string_to_metric_families(response.text):
        exported.add(family.name)
        exported.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        exported.update(sample.name for sample in family.samples)
    used = {name for queries in panel_queries().values() for expr in queries for name in metric_names(expr)}
    assert used, "the dashboard queries no metric"
    assert used - exported == set()


def test_api_replicas_report_identical_worker_totals(monitored: System) -> None:
    _, second_url = monitored.start_api("api-2")
    finish_jobs(monitored, 2)
    first, second = settled_stats(monitored), settled_stats(monitored, second_url)
    for key in ("latency_s", "processing_s"):
        assert {k: v for k, v in first[key].items() if k != "recent"} == {
            k: v for k, v in second[key].items() if k != "recent"
        }
    assert {k: v for k, v in first["jobs"].items() if k != "submitted_here"} == {
        k: v for k, v in second["jobs"].items() if k != "submitted_here"
    }
    assert first["workers"]["active"] == second["workers"]["active"] == 2
    # Upload counters are each replica's own: the second one accepted none.
    assert get_stats(second_url)["api"]["submitted"] == 0
    assert get_metrics(second_url)["imgpipe_jobs_completed_total"] == get_metrics(monitored.api_url)[
        "imgpipe_jobs_completed_total"
    ]


def test_logs_follow_one_job_through_every_service(monitored: System) -> None:
    job_id = finish_jobs(monitored, 1)[0]

    def lines_about_job() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for service in monitored.services.values():
            for line in service.log().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("job_id") == job_id:
                    found.setdefault(entry["service"], []).append(entry["message"])
        return found

    found = wait_for(
        lambda: (f := lines_about_job()) and "notification" in f and f, 15, "the notifier's line"
    )
    assert set(found) == {"api", "worker", "notification"}
    assert any(m.startswith("queued") for m in found["api"])
    assert any(m.startswith("processing") for m in found["worker"])
    assert any(m.startswith("completed") for m in found["worker"])
    assert any("completed" in m for m in found["notification"])


def test_performance_monitor_reports_throughput_and_writes_csv(monitored: System, tmp_path: Path) -> None:
    before = settled_stats(monitored)["jobs"]["completed"]
    finish_jobs(monitored, 3)
    settled = settled_stats(monitored)
    dead_letters = monitored.vhost.message_count("images.jobs.dead")
    env = {**monitored.env, "API_PUBLIC_URL": monitored.api_url}
    csv_path = tmp_path / "perf.csv"

    result = run_monitor("performance_monitor.py", env, "--once", "--json", "--csv", str(csv_path))
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert reading["api_error"] is None and reading["broker_error"] is None
    assert reading["throughput_per_s"] > 0
    assert reading["completed_total"] == before + 3
    assert reading["failed_total"] == settled["jobs"]["failed"]
    assert reading["latency_p50_s"] > 0 and reading["latency_p99_s"] >= reading["latency_p50_s"]
    assert reading["workers_active"] == 2 and 0 < reading["utilization_avg"] <= 1
    assert (reading["queue_ready"], reading["dead_letter_messages"]) == (0, dead_letters)

    assert run_monitor("performance_monitor.py", env, "--once", "--csv", str(csv_path)).returncode == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2
    assert float(rows[0]["throughput_per_s"]) > 0
    assert rows[0]["completed_total"] == str(before + 3)


def test_queue_depth_rises_when_workers_stop_and_drains_when_one_returns(monitored: System) -> None:
    before = settled_stats(monitored)["jobs"]["completed"]
    dead_letters = monitored.vhost.message_count("images.jobs.dead")
    for name in ("worker-a", "worker-b"):
        monitored.services[name].stop()
    monitored.vhost.wait_for_consumers_at_most(WORK_QUEUE, 0)

    upload_jobs(monitored, 4)
    # The management API's figures are sampled (every 5 s): ready and consumers may catch up apart.
    stats = wait_stats(
        monitored,
        lambda s: (
            s["queues"]["queues"][WORK_QUEUE]["ready"], s["queues"]["queues"][WORK_QUEUE]["consumers"]
        ) == (4, 0),
        "4 ready messages and no consumer in /stats", 30,
    )
    assert stats["workers"]["active"] == 0
    assert stats["jobs"]["completed"] == before

    result = run_monitor("queue_monitor.py", monitored.env, "--once", "--json")
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert reading["available"] is True
    assert (reading["queues"][WORK_QUEUE]["ready"], reading["queues"][WORK_QUEUE]["consumers"]) == (4, 0)
    assert reading["dead_letter_messages"] == dead_letters

    monitored.start_worker("worker-a")
    drained = wait_stats(
        monitored,
        lambda s: s["jobs"]["completed"] == before + 4 and s["queues"]["queues"][WORK_QUEUE]["ready"] == 0,
        "the queue to drain", 60,
    )
    FINISHED["completed"] += 4
    # A restarted worker writes a snapshot of its own: the earlier totals are kept, not reset.
    assert drained["workers"]["active"] == 1
    assert drained["workers"]["known"] == stats["workers"]["known"] + 1
    assert get_metrics(monitored.api_url)["imgpipe_jobs_completed_total"] >= before + 4
    monitored.start_worker("worker-b")


def test_queue_monitor_reports_unavailable_management_api_and_keeps_polling() -> None:
    env = {"PATH": "/usr/bin:/bin", "RABBITMQ_MANAGEMENT_PORT": str(free_port()), "RABBITMQ_VHOST": "/"}
    result = run_monitor("queue_monitor.py", env, "--once", "--json")
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert reading["available"] is False
    assert "unavailable" in reading["error"]

    live = subprocess.Popen(
        [sys.executable, "monitoring/queue_monitor.py", "--json", "--interval", "0.3"],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = [live.stdout.readline() for _ in range(3)]
        assert live.poll() is None, "the monitor stopped"
    finally:
        live.terminate()
        live.wait(10)
    assert [json.loads(line)["available"] for line in lines] == [False, False, False]


def test_performance_monitor_reports_unavailable_api_and_keeps_queue_figures(monitored: System) -> None:
    env = {**monitored.env, "API_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"}
    # The management API samples queue figures: wait until it shows the queue empty, as it is.
    wait_for(lambda: monitored.vhost.queue(WORK_QUEUE)["messages_ready"] == 0, 30, "an empty work queue")
    result = run_monitor("performance_monitor.py", env, "--once", "--json")  # a hang fails run_monitor's timeout
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert "unavailable" in reading["api_error"]
    assert reading["throughput_per_s"] is None
    assert reading["queue_ready"] == 0 and reading["broker_error"] is None
