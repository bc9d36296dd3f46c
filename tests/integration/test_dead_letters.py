"""The dead-letter queue through the API: what failed and why, and replaying once the cause is fixed."""

import httpx
import pytest

from harness.processes import wait_for
from harness.system import System
from tests.integration.test_faults import upload_ok

# Systems of a test's own (make_system) run on RabbitMQ 3 and on RabbitMQ 4.
pytestmark = [pytest.mark.integration, pytest.mark.every_broker]


def dlq_stats(system: System) -> dict:
    with system.http as client:
        response = client.get("/dlq/stats")
        assert response.status_code == 200, response.text
        return response.json()


def replay(system: System, **body) -> httpx.Response:
    with system.http as client:
        return client.post("/dlq/replay", json=body)


def fail_with_missing_originals(system: System, sample_jpg, count: int) -> list[str]:
    """Jobs whose original disappears before a worker gets to them: they fail, dead-lettered."""
    jobs = [upload_ok(system, sample_jpg, operations="resize(width=120)") for _ in range(count)]
    for job_id in jobs:
        system.store.delete(f"originals/{job_id}")
    system.start_worker("worker-a")
    for job_id in jobs:
        status = system.wait_finished(job_id)
        assert status["status"] == "failed" and status["error_reason"] == "original_missing", status
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == count, 10, "the dead letters")
    return jobs


def test_dlq_stats_count_by_reason_with_recent_entries(make_system, sample_jpg, corrupted_jpg) -> None:
    system = make_system(workers=(), notifier=False)
    missing = fail_with_missing_originals(system, sample_jpg, 2)
    corrupted = upload_ok(system, corrupted_jpg, operations="resize")
    assert system.wait_finished(corrupted)["status"] == "failed"
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 3, 10, "the third dead letter")

    stats = dlq_stats(system)
    assert stats["count"] == 3
    assert stats["by_reason"] == {"original_missing": 2, "truncated": 1}
    assert stats["oldest_age_s"] >= 0
    assert stats["recent"][0]["job_id"] == corrupted
    assert {entry["job_id"] for entry in stats["recent"]} == {*missing, corrupted}
    assert all(entry["attempts"] == 1 and entry["worker"] == "worker-a" for entry in stats["recent"])
    # Reading the statistics takes nothing out of the queue.
    assert system.vhost.message_count("images.jobs.dead") == 3


def test_dlq_replay_one_job_after_its_cause_is_fixed(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False)
    first, second = fail_with_missing_originals(system, sample_jpg, 2)
    system.store.put(f"originals/{first}", sample_jpg.read_bytes(), "image/jpeg")

    response = replay(system, job_id=first)
    assert response.status_code == 200, response.text
    assert response.json() == {"replayed": 1, "job_ids": [first], "skipped": [], "remaining": 1}
    status = system.wait_finished(first)
    assert status["status"] == "completed", status
    assert status["attempts"] == 1
    assert status["result"]["width"] == 120
    assert [e["job_id"] for e in dlq_stats(system)["recent"]] == [second]


def test_dlq_replay_all_moves_every_letter_once(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False)
    jobs = fail_with_missing_originals(system, sample_jpg, 4)
    for job_id in jobs:
        system.store.put(f"originals/{job_id}", sample_jpg.read_bytes(), "image/jpeg")

    # With no worker to absorb a duplicate, the work queue shows exactly what the replay sent.
    system.services["worker-a"].stop()
    response = replay(system)
    assert response.status_code == 200, response.text
    assert sorted(response.json()["job_ids"]) == sorted(jobs)
    assert system.vhost.message_count("images.jobs.work") == 4
    assert system.vhost.message_count("images.jobs.dead") == 0
    system.start_worker("worker-a")
    statuses = [system.wait_finished(job_id) for job_id in jobs]
    assert [s["status"] for s in statuses] == ["completed"] * 4
    assert system.vhost.message_count("images.jobs.dead") == 0
    assert system.vhost.message_count("images.jobs.work") == 0


def test_dlq_replay_of_a_job_still_broken_fails_it_again_once(make_system, corrupted_jpg) -> None:
    system = make_system(workers=("worker-a",), notifier=False)
    job_id = upload_ok(system, corrupted_jpg, operations="resize")
    first_failure = system.wait_finished(job_id)
    assert first_failure["status"] == "failed"
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 10, "the dead letter")

    assert replay(system, job_id=job_id).json()["replayed"] == 1
    again = wait_for(
        lambda: (s := system.status(job_id))["finished_at"] not in (None, first_failure["finished_at"]) and s,
        30, "the job to fail again",
    )
    assert again["status"] == "failed" and again["error_reason"] == "truncated"
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 10, "one dead letter again")
    assert dlq_stats(system)["count"] == 1
    assert system.vhost.message_count("images.jobs.work") == 0


def test_dlq_replay_of_an_unknown_job_is_404(system: System) -> None:
    response = replay(system, job_id="0123456789abcdef0123456789abcdef")
    assert response.status_code == 404
    assert "not in the dead-letter queue" in response.json()["detail"]


def test_quorum_queues_carry_jobs_and_dead_letters(make_system, sample_jpg, corrupted_jpg) -> None:
    system = make_system(workers=("worker-a",), notifier=False, QUEUE_TYPE="quorum")
    for queue in ("images.jobs.work", "images.jobs.dead", "images.notifications"):
        assert system.vhost.queue(queue)["type"] == "quorum"
    assert system.vhost.queue("images.jobs.work")["arguments"]["x-delivery-limit"] == 5

    good = upload_ok(system, sample_jpg, operations="resize(width=90)")
    assert system.wait_finished(good)["status"] == "completed"
    bad = upload_ok(system, corrupted_jpg, operations="resize")
    assert system.wait_finished(bad)["status"] == "failed"
    wait_for(lambda: dlq_stats(system)["by_reason"] == {"truncated": 1}, 15, "the dead letter")


def test_dlq_stats_looked_at_50_times_lose_no_letter_on_quorum_queues(make_system, corrupted_jpg) -> None:
    """Each look hands the letters back to the queue, which a quorum queue counts as a failed
    delivery: without a stated limit, RabbitMQ 4 dropped every letter after about 20 looks."""
    system = make_system(workers=("worker-a",), notifier=False, QUEUE_TYPE="quorum")
    jobs = [upload_ok(system, corrupted_jpg, operations="resize") for _ in range(3)]
    for job_id in jobs:
        assert system.wait_finished(job_id)["status"] == "failed"
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 3, 15, "the dead letters")

    for look in range(1, 51):
        stats = dlq_stats(system)
        assert (look, stats["count"], stats["by_reason"]) == (look, 3, {"truncated": 3})
        assert {entry["job_id"] for entry in stats["recent"]} == set(jobs)
    assert system.vhost.message_count("images.jobs.dead") == 3


def test_unreadable_events_are_kept_as_notification_dead_letters_on_quorum_queues(make_system) -> None:
    system = make_system(workers=(), QUEUE_TYPE="quorum")
    system.vhost.publish("images.events", "job.completed", b"not an event")
    wait_for(lambda: system.vhost.message_count("images.notifications.dead") == 1, 15, "the event's dead letter")

    for _ in range(25):  # more looks than RabbitMQ 4's default delivery limit
        ((properties, body),) = system.vhost.get_messages("images.notifications.dead")
    assert body == b"not an event"
    assert properties.headers["x-death"][0]["reason"] == "rejected"
    assert system.vhost.message_count("images.notifications") == 0
    assert "dead-lettering an unreadable event" in system.services["notifier"].log()
