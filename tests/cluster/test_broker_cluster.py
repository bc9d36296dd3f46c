"""A three-node RabbitMQ cluster loses the node that leads the work queue in the middle of a load.

The system (API, two workers, notifier) runs with RABBITMQ_HOSTS naming all three nodes and
QUEUE_TYPE=quorum. 200 jobs are queued (a burst: the workers start once they are in), and once
50 have completed the work queue's leader is killed (SIGKILL, no goodbye). Every job must complete
exactly once, nothing may be lost, the services must reconnect to the survivors without a restart,
and the leader must move; then the node comes back and rejoins.
"""

import time
import uuid
from collections import Counter
from datetime import datetime

import httpx
import pytest

from common.topology import DEAD_LETTER_QUEUE, NOTIFICATIONS_QUEUE, WORK_QUEUE
from harness.broker import BrokerVhost
from harness.broker_cluster import BrokerCluster
from harness.processes import PROJECT_DIR, wait_for
from harness.system import build_system
from tests.cluster.conftest import report_figures
from tests.cluster.ledger import (
    LOAD_OPERATIONS,
    LOAD_RATE_LIMIT,
    WORKERS,
    WorkerLedger,
    assert_completed_once,
    declare_event_capture,
    notified_at,
    per_job,
    submit_jobs,
)

# Clusters start and lose a member here: more than the default per-test timeout on 2 busy cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

JOBS = 200
KILL_AFTER_COMPLETED = 50


def api_stats(api_url: str) -> dict:
    return httpx.get(f"{api_url}/stats", timeout=10).raise_for_status().json()


def survivor_vhost(cluster: BrokerCluster, name: str) -> BrokerVhost:
    return BrokerVhost(name=name, endpoint=cluster.endpoint())


def test_broker_node_lost_mid_load_every_job_completes_exactly_once(
    broker_cluster: BrokerCluster, s3_endpoint: str, tmp_path, capsys
) -> None:
    cluster = broker_cluster
    vhost = BrokerVhost(endpoint=cluster.seed.endpoint).create()
    system = build_system(
        vhost, s3_endpoint, tmp_path, workers=(),
        RABBITMQ_HOSTS=cluster.hosts(),
        RABBITMQ_MANAGEMENT_PORT=str(cluster.management_port),
        QUEUE_TYPE="quorum",
        LOG_JSON="true",
        RATE_LIMIT_UPLOADS=LOAD_RATE_LIMIT,
    )
    capture = f"test.events.{uuid.uuid4().hex[:8]}"
    victim = None
    try:
        with vhost.connection() as connection:
            declare_event_capture(connection, capture)
        queue = cluster.queue(vhost.name, WORK_QUEUE)
        assert (queue["type"], len(queue["members"])) == ("quorum", 3), queue

        started = time.monotonic()
        jobs = submit_jobs(system.api_url, PROJECT_DIR / "test_images" / "sample.jpg", LOAD_OPERATIONS, JOBS)
        submitted_s = time.monotonic() - started
        assert vhost.message_count(WORK_QUEUE) == JOBS
        for name in WORKERS:
            system.start_worker(name)
        wait_for(lambda: vhost.message_count(capture) >= KILL_AFTER_COMPLETED, 120, "the first completions")

        leader_before = cluster.leader(vhost.name, WORK_QUEUE)
        victim = cluster.node(leader_before)
        completed_before = survivor_vhost(cluster, vhost.name).message_count(capture)
        lost_at = time.time()
        victim.kill()

        leader_after = wait_for(
            lambda: (leader := cluster.leader(vhost.name, WORK_QUEUE)) not in (None, leader_before) and leader,
            60, "a new leader of the work queue",
        )
        new_leader_s = time.time() - lost_at
        survivors = survivor_vhost(cluster, vhost.name)
        wait_for(lambda: survivors.message_count(capture) >= JOBS, 240, f"{JOBS} completion events")
        drained_s = time.time() - lost_at

        # Nothing left behind, nothing dead-lettered, every service still the same process.
        wait_for(lambda: survivors.message_count(NOTIFICATIONS_QUEUE) == 0, 60, "the notifier to catch up")
        assert survivors.message_count(WORK_QUEUE) == 0
        assert survivors.message_count(DEAD_LETTER_QUEUE) == 0
        assert {name: s.running for name, s in system.services.items()} == dict.fromkeys(system.services, True)
        survivors.wait_for_consumers(WORK_QUEUE, 2)
        survivors.wait_for_consumers(NOTIFICATIONS_QUEUE, 1)
        # The API's management API client started on the lost node too: /stats reads the queues
        # from a survivor.
        broker_source = wait_for(
            lambda: (source := api_stats(system.api_url)["sources"]["broker"])["available"]
            and datetime.fromisoformat(source["read_at"]).timestamp() > lost_at
            and source,
            30, "/stats to read the broker again",
        )
        assert broker_source["error"] is None

        # Exactly once: one completion event per job, one committed result per job.
        with survivors.connection() as connection:
            completed_events, ledger = assert_completed_once(
                connection, capture, jobs, [system.services[name].log() for name in WORKERS]
            )
        # A job started twice is one that was in flight when the node went: its first delivery
        # was abandoned. At most one per worker (prefetch 1).
        restarted = {job for job in jobs if ledger.starts[job] > 1}
        assert restarted <= set(ledger.abandoned)
        assert sum(ledger.abandoned.values()) <= 2

        statuses = [system.status(job_id) for job_id in jobs]
        assert Counter(s["status"] for s in statuses) == {"completed": JOBS}
        first_record_after = min(
            t for s in statuses if (t := datetime.fromisoformat(s["finished_at"]).timestamp()) > lost_at
        )
        # Through the whole cluster: the first completion event the notifier handled after the loss.
        first_event_after = min(t for t in notified_at(system.services["notifier"].log()) if t > lost_at)
        # Every worker was on the lost node (the leader is where the topology was declared) and
        # moved to a survivor on its own.
        victim_address = f"{victim.endpoint.host}:{victim.endpoint.port}"
        for name in WORKERS:
            moves = WorkerLedger.read([system.services[name].log()]).broker_nodes
            assert moves[0] == victim_address and moves[-1] != victim_address, (name, moves)

        # The node comes back and rejoins: running, and a member of the work queue again.
        restarted_at = time.monotonic()
        victim.start()
        wait_for(lambda: victim.node in cluster.running_nodes(), 120, "the node to rejoin the cluster")
        wait_for(
            lambda: victim.node in cluster.queue(vhost.name, WORK_QUEUE).get("online", []), 120,
            "the node to be an online member of the work queue",
        )
        rejoined_s = time.monotonic() - restarted_at

        figures = {
            "jobs": JOBS,
            "operations": LOAD_OPERATIONS,
            "submitted_in_s": round(submitted_s, 1),
            "completed_before_the_loss": completed_before,
            "leader_before": leader_before,
            "leader_after": leader_after,
            "new_leader_reported_after_s": round(new_leader_s, 2),
            "first_record_completed_after_the_loss_s": round(first_record_after - lost_at, 2),
            "first_completion_notified_after_the_loss_s": round(first_event_after - lost_at, 2),
            "all_completed_after_the_loss_s": round(drained_s, 1),
            "completion_events_per_job": dict(per_job(completed_events, jobs)),
            "results_committed_per_job": dict(per_job(ledger.commits, jobs)),
            "deliveries_abandoned": sum(ledger.abandoned.values()),
            "events_republished_for_completed_jobs": sum(ledger.republished.values()),
            "node_rejoined_in_s": round(rejoined_s, 1),
        }
        report_figures(
            "broker_node_loss", figures,
            f"broker node lost mid-load: first job completed {figures['first_record_completed_after_the_loss_s']} s "
            f"after the loss (its event at the notifier {figures['first_completion_notified_after_the_loss_s']} s); "
            f"all {JOBS} done {figures['all_completed_after_the_loss_s']} s after it; "
            f"leader {leader_before} -> {leader_after}",
            capsys,
        )
    except BaseException:
        print(system.logs())
        raise
    finally:
        system.stop()
        if victim is not None and not victim.running():
            victim.start()
        BrokerVhost(name=vhost.name, endpoint=cluster.endpoint()).delete()
