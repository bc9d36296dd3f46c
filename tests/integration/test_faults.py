"""Faults the system survives: workers killed or stopped mid-job, the broker restarted, the object
store down, the notifier down, a webhook that keeps failing. Each on real services."""

import signal
from collections import Counter

import pytest

from harness.broker import BrokerVhost
from harness.objectstore import PrivateObjectStore
from harness.processes import wait_for
from harness.system import System
from harness.webhooks import WebhookReceiver

pytestmark = pytest.mark.integration

# About 5 s of real work on these machines: enough to act while a worker is in the middle of it.
SLOW_OPERATIONS = "resize(width=6000,height=4500,fit=fill,upscale=true)," + ",".join(
    ["filter(name=blur,radius=40)"] * 8
) + ",resize(width=600)"


def upload_ok(system: System, path, **form) -> str:
    response = system.upload(path, **form)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def wait_processing(system: System, job_id: str) -> dict:
    return wait_for(
        lambda: (s := system.status(job_id))["status"] == "processing" and s, 30, f"{job_id} to start"
    )


@pytest.mark.every_broker
def test_worker_killed_mid_job_job_completes_on_another_worker(make_system, sample_jpg) -> None:
    system = make_system(workers=("worker-a", "worker-b"), notifier=False)
    job_id = upload_ok(system, sample_jpg, operations=SLOW_OPERATIONS)
    victim = wait_processing(system, job_id)["worker"]
    system.services[victim].kill()

    status = system.wait_finished(job_id, timeout=120)
    survivor = ({"worker-a", "worker-b"} - {victim}).pop()
    assert status["status"] == "completed", status
    assert status["worker"] == survivor
    assert status["attempts"] == 2
    assert (status["result"]["width"], status["result"]["height"]) == (600, 450)
    assert system.vhost.message_count("images.jobs.work") == 0
    assert system.vhost.message_count("images.jobs.dead") == 0


def test_worker_sigterm_finishes_current_job_then_exits(make_system, sample_jpg) -> None:
    system = make_system(workers=("worker-a", "worker-b"), notifier=False, SHUTDOWN_GRACE_S="60")
    job_id = upload_ok(system, sample_jpg, operations=SLOW_OPERATIONS)
    stopping = wait_processing(system, job_id)["worker"]
    system.services[stopping].signal(signal.SIGTERM)

    # Stops taking new work at once: the next job goes to the other worker.
    system.vhost.wait_for_consumers_at_most("images.jobs.work", 1)
    other_job = upload_ok(system, sample_jpg, operations="resize(width=100)")

    assert system.services[stopping].process.wait(90) == 0
    status = system.status(job_id)
    assert status["status"] == "completed", status
    assert status["worker"] == stopping
    assert status["attempts"] == 1
    other = system.wait_finished(other_job)
    assert other["worker"] != stopping
    assert system.vhost.message_count("images.jobs.work") == 0
    # The stopping worker acked before it left: had it not, the broker would have handed the
    # message back, ahead of any later job, to the other worker, which would have logged it.
    last = upload_ok(system, sample_jpg, operations="resize(width=50)")
    assert system.wait_finished(last)["worker"] == other["worker"]
    survivor = system.services[other["worker"]].log()
    assert f"job={job_id}" not in survivor, survivor[-2000:]


def test_worker_sigterm_past_the_grace_period_hands_the_job_back(make_system, sample_jpg) -> None:
    system = make_system(workers=("worker-a", "worker-b"), notifier=False, SHUTDOWN_GRACE_S="0.5")
    job_id = upload_ok(system, sample_jpg, operations=SLOW_OPERATIONS)
    stopping = wait_processing(system, job_id)["worker"]
    system.services[stopping].signal(signal.SIGTERM)

    assert system.services[stopping].process.wait(30) == 0
    status = system.wait_finished(job_id, timeout=120)
    assert status["status"] == "completed", status
    assert status["worker"] != stopping
    assert status["attempts"] == 2


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver, receiver.url()
    receiver.close()


@pytest.mark.every_broker
def test_broker_restart_loses_no_job_and_services_reconnect(
    make_system, private_broker, webhook, sample_jpg
) -> None:
    hooks, hook_url = webhook
    vhost = BrokerVhost(endpoint=private_broker.endpoint).create()
    system = make_system(vhost=vhost, workers=("worker-a",))
    busy = upload_ok(system, sample_jpg, operations=SLOW_OPERATIONS, callback_url=hook_url)
    wait_processing(system, busy)
    waiting = [upload_ok(system, sample_jpg, operations="resize(width=200)", callback_url=hook_url) for _ in range(3)]
    assert vhost.message_count("images.jobs.work") == 3

    private_broker.stop()
    private_broker.start()
    # Durable queue, persistent messages: all still there (the busy one was never acked).
    assert vhost.message_count("images.jobs.work") >= 3

    after = upload_ok(system, sample_jpg, operations="resize(width=100)", callback_url=hook_url)
    jobs = [busy, *waiting, after]
    statuses = [system.wait_finished(job_id, timeout=120) for job_id in jobs]
    assert [s["status"] for s in statuses] == ["completed"] * 5, statuses
    wait_for(lambda: set(jobs) <= {c.job_id for c in hooks.calls}, 60, "every job's webhook")
    assert all(service.running for service in system.services.values())


@pytest.mark.every_broker
def test_object_store_outage_uploads_get_503_and_jobs_complete_after(make_system, tmp_path, sample_jpg) -> None:
    store = PrivateObjectStore(tmp_path / "s3-outage").start()
    try:
        system = make_system(s3=store.endpoint, workers=("worker-a",), notifier=False, RETRY_BASE_DELAY_MS="1000")
        system.services["worker-a"].stop()
        queued = [upload_ok(system, sample_jpg, operations="resize(width=300)") for _ in range(2)]

        store.stop()
        system.start_worker("worker-a")  # takes the jobs while storage is down: they go to retry
        with system.http as client:
            refused = client.post(
                "/upload", files={"file": ("s.jpg", sample_jpg.read_bytes())}, data={"operations": "resize"}
            )
            assert refused.status_code == 503, refused.text
            assert "object storage is unavailable" in refused.json()["detail"]
            assert client.get("/ready").status_code == 503
        wait_for(lambda: system.vhost.message_count("images.jobs.work") == 0, 30, "the worker to take the jobs")

        store.start()
        statuses = [system.wait_finished(job_id, timeout=120) for job_id in queued]
        assert [s["status"] for s in statuses] == ["completed", "completed"], statuses
        assert all(s["attempts"] > 1 for s in statuses)
        with system.http as client:
            assert client.get("/ready").status_code == 200
        recovered = upload_ok(system, sample_jpg, operations="resize(width=50)")
        assert system.wait_finished(recovered)["status"] == "completed"
        assert system.vhost.message_count("images.jobs.dead") == 0
    finally:
        store.stop()


@pytest.mark.every_broker
def test_notifier_down_events_wait_and_are_delivered_when_it_returns(make_system, webhook, sample_jpg) -> None:
    hooks, hook_url = webhook
    system = make_system(workers=("worker-a",))
    system.services["notifier"].stop()
    jobs = [upload_ok(system, sample_jpg, operations="resize(width=64)", callback_url=hook_url) for _ in range(3)]
    for job_id in jobs:
        assert system.wait_finished(job_id)["status"] == "completed"
    wait_for(lambda: system.vhost.message_count("images.notifications") == 3, 10, "events to wait in the queue")
    assert hooks.calls == []

    system.services["notifier"].start()
    wait_for(lambda: Counter(c.job_id for c in hooks.calls) == Counter(jobs), 30, "the delivered events")
    wait_for(lambda: system.vhost.message_count("images.notifications") == 0, 10, "the queue to drain")


@pytest.mark.every_broker
def test_failing_webhook_is_retried_then_given_up_with_a_record(make_system, webhook, sample_jpg) -> None:
    hooks, hook_url = webhook
    hooks.status_code = 500
    system = make_system(workers=("worker-a",), WEBHOOK_ATTEMPTS="3", WEBHOOK_BACKOFF_S="0.05")
    job_id = upload_ok(system, sample_jpg, operations="resize(width=64)", callback_url=hook_url)
    assert system.wait_finished(job_id)["status"] == "completed"

    record = wait_for(lambda: (s := system.status(job_id))["webhook"] and s, 30, "the webhook record")
    assert record["webhook"]["delivered"] is False
    assert record["webhook"]["attempts"] == 3
    # Why it failed stays in the notifier's log: /status does not tell a refusal from an error.
    assert record["webhook"]["error"] == "not delivered: the endpoint did not accept the event"
    assert [c.job_id for c in hooks.calls] == [job_id] * 3
    wait_for(lambda: system.vhost.message_count("images.notifications") == 0, 10, "the event to be acked")
    assert "given up after 3 attempt(s): HTTP 500" in system.services["notifier"].log()
