"""Trust nothing on the bus: messages and events published by another client of the broker."""

import json
from datetime import UTC, datetime

import pytest

from common.jobs import original_key
from common.messages import JobEvent, JobMessage
from common.operations import Resize
from harness.processes import wait_for
from harness.webhooks import WebhookReceiver
from tests.support.images import png_of

pytestmark = pytest.mark.integration


def forged_job(job_id: str, **fields) -> bytes:
    message = {
        "job_id": job_id, "original_key": original_key(job_id), "operations": [{"name": "resize", "width": 30}],
        "quality": 85, "submitted_at": datetime.now(UTC).isoformat(), **fields,
    }
    return JobMessage.model_validate(message).model_dump_json().encode()


def test_a_message_naming_another_jobs_original_is_dead_lettered(make_system, sample_jpg, tmp_path) -> None:
    system = make_system(workers=(), notifier=False)
    victim = system.upload(sample_jpg, operations="resize(width=30)").json()["job_id"]
    own = tmp_path / "own.png"
    own.write_bytes(png_of((60, 20)))
    attacker = system.upload(own, operations="resize(width=30)").json()["job_id"]
    # The attacker's own job, pointed at the victim's original.
    system.publish_job(forged_job(attacker, original_key=original_key(victim)), message_id=attacker)
    system.start_worker("worker-a")

    assert system.wait_finished(victim)["result"]["height"] == 22  # sample.jpg is 4:3 → 30×22
    attacked = system.wait_finished(attacker)
    assert attacked["status"] == "completed"
    assert (attacked["result"]["width"], attacked["result"]["height"]) == (30, 10)  # its own 3:1 image
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 20, "the forged message")
    ((properties, _),) = system.vhost.get_messages("images.jobs.dead", 5)
    assert properties.headers["x-failure-reason"] == "invalid_message"
    assert "disagrees with the record" in properties.headers["x-failure-error"]
    assert "original_key" in properties.headers["x-failure-error"]


def test_a_message_with_other_operations_than_the_record_is_dead_lettered(make_system) -> None:
    system = make_system(workers=(), notifier=False)
    job_id = system.submit_directly(png_of((80, 80)), [Resize(width=40)], 80, 80)
    system.publish_job(forged_job(job_id, operations=[{"name": "resize", "width": 16000, "upscale": True}]), job_id)
    system.start_worker("worker-a")
    status = system.wait_finished(job_id)
    assert status["status"] == "completed" and status["result"]["width"] == 40  # as submitted
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 20, "the forged message")
    ((properties, _),) = system.vhost.get_messages("images.jobs.dead", 5)
    assert "operations" in properties.headers["x-failure-error"]
    # The record was not marked failed by the forged message.
    assert system.status(job_id)["error"] is None


def test_forged_events_cannot_make_the_notifier_call_anyone(make_system, sample_jpg) -> None:
    receiver = WebhookReceiver()
    try:
        system = make_system(workers=("worker-a",))
        job_id = system.upload(sample_jpg, operations="resize(width=20)", callback_url=receiver.url()).json()["job_id"]
        wait_for(lambda: (s := system.status(job_id))["webhook"] and s["webhook"]["delivered"], 30, "the webhook")
        assert len(receiver.calls_for(job_id)) == 1
        notifier = system.services["notifier"]
        # An event that contradicts the record, and one that repeats it: neither is sent.
        for status in ("failed", "completed"):
            event = JobEvent(event=f"job.{status}", job_id=job_id, status=status)
            system.vhost.publish("images.events", event.event, event.model_dump_json().encode())
        wait_for(lambda: "event says failed but the job is completed; ignored" in notifier.log(), 20, "the refusal")
        wait_for(lambda: "already delivered; not sending it again" in notifier.log(), 20, "the duplicate")
        assert len(receiver.calls_for(job_id)) == 1
        # The payload came from the record, not from any event.
        assert json.loads(receiver.calls_for(job_id)[0].body)["data"]["result"]["width"] == 20
    finally:
        receiver.close()
