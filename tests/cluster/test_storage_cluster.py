"""Replicated object storage: a SeaweedFS cluster (master, three volume servers, filer with the S3
gateway; replication 001) loses a volume server in the middle of a load. Every job still completes,
once, and every original and result stays readable while the server is gone."""

import time
import uuid
from collections import Counter

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from common.topology import DEAD_LETTER_QUEUE, WORK_QUEUE
from harness.broker import BrokerVhost
from harness.objectstore import S3_KEYS, PrivateStorageCluster
from harness.processes import PROJECT_DIR, wait_for
from harness.system import build_system
from tests.cluster.conftest import report_figures
from tests.cluster.ledger import (
    LOAD_OPERATIONS,
    LOAD_RATE_LIMIT,
    WORKERS,
    assert_completed_once,
    declare_event_capture,
    per_job,
    submit_jobs,
)

# Clusters start and lose a member here: more than the default per-test timeout on 2 busy cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

JOBS = 100
KILL_AFTER_COMPLETED = 25
VICTIM = "volume-1"


@pytest.fixture
def storage_cluster(tmp_path):
    cluster = PrivateStorageCluster(tmp_path / "seaweedfs").start()
    yield cluster
    cluster.stop()


def test_storage_cluster_refuses_wrong_credentials(storage_cluster: PrivateStorageCluster) -> None:
    intruder = Minio(storage_cluster.endpoint, access_key=S3_KEYS["S3_ACCESS_KEY"], secret_key="wrong-secret",
                     secure=False, region="us-east-1")
    with pytest.raises(S3Error) as refused:
        intruder.list_buckets()
    assert refused.value.code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")


def test_storage_volume_lost_mid_load_every_job_completes_and_stays_readable(
    storage_cluster: PrivateStorageCluster, tmp_path, capsys
) -> None:
    vhost = BrokerVhost().create()
    system = build_system(
        vhost, storage_cluster.endpoint, tmp_path, workers=(), LOG_JSON="true", RATE_LIMIT_UPLOADS=LOAD_RATE_LIMIT
    )
    capture = f"test.events.{uuid.uuid4().hex[:8]}"
    try:
        with vhost.connection() as connection:
            declare_event_capture(connection, capture)
        jobs = submit_jobs(system.api_url, PROJECT_DIR / "test_images" / "sample.jpg", LOAD_OPERATIONS, JOBS)
        for name in WORKERS:
            system.start_worker(name)
        wait_for(lambda: vhost.message_count(capture) >= KILL_AFTER_COMPLETED, 120, "the first completions")

        completed_before = vhost.message_count(capture)
        lost_at = time.time()
        storage_cluster.kill_member(VICTIM)
        wait_for(lambda: vhost.message_count(capture) >= JOBS, 240, f"{JOBS} completion events")
        drained_s = time.time() - lost_at

        assert vhost.message_count(WORK_QUEUE) == 0
        assert vhost.message_count(DEAD_LETTER_QUEUE) == 0
        with vhost.connection() as connection:
            completed_events, _ = assert_completed_once(
                connection, capture, jobs, [system.services[name].log() for name in WORKERS]
            )

        # With the volume server still gone: every record, original and result can be read.
        statuses = [system.status(job_id) for job_id in jobs]
        assert Counter(s["status"] for s in statuses) == {"completed": JOBS}
        with httpx.Client(base_url=system.api_url, timeout=30) as client:
            results = [client.get(f"/result/{job_id}") for job_id in jobs]
        assert Counter(r.status_code for r in results) == {200: JOBS}
        assert {r.content[:2] for r in results} == {b"\xff\xd8"}  # JPEG
        assert {(s["result"]["width"], s["result"]["bytes"]) for s in statuses} == {
            (400, len(r.content)) for r in results
        }
        store = system.store
        assert all(store.get(s["original"]["key"]) for s in statuses)
        retried = sum(1 for s in statuses if s["attempts"] > 1)

        figures = {
            "jobs": JOBS,
            "operations": LOAD_OPERATIONS,
            "volume_servers": storage_cluster.volume_servers,
            "replication": "001",
            "completed_before_the_loss": completed_before,
            "all_completed_after_the_loss_s": round(drained_s, 1),
            "jobs_retried": retried,
            "completion_events_per_job": dict(per_job(completed_events, jobs)),
            "results_readable_with_the_server_gone": sum(r.status_code == 200 for r in results),
        }
        report_figures(
            "storage_volume_loss", figures,
            f"storage volume server lost mid-load: all {JOBS} jobs completed "
            f"{figures['all_completed_after_the_loss_s']} s after the loss ({retried} retried), every result readable",
            capsys,
        )
    except BaseException:
        print(system.logs())
        raise
    finally:
        system.stop()
        vhost.delete()
