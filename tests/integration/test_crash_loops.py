"""A job that kills every worker that takes it fails for good after MAX_ATTEMPTS, with the number
of attempts it really had."""

import pytest

from harness.processes import wait_for
from tests.integration.test_faults import SLOW_OPERATIONS, upload_ok

pytestmark = pytest.mark.integration


@pytest.mark.every_broker
def test_a_job_that_keeps_killing_workers_fails_after_max_attempts(make_system, sample_jpg) -> None:
    system = make_system(workers=("worker-1",), notifier=False, MAX_ATTEMPTS="2")
    job_id = upload_ok(system, sample_jpg, operations=SLOW_OPERATIONS)
    for attempt, worker in ((1, "worker-1"), (2, "worker-2")):
        wait_for(
            lambda attempt=attempt: (s := system.status(job_id))["status"] == "processing" and s["attempts"] == attempt,
            60, f"attempt {attempt} to start",
        )
        system.services[worker].kill()  # as the OOM killer would, mid-job
        system.start_worker(f"worker-{attempt + 1}")

    status = system.wait_finished(job_id, timeout=60)
    assert status["status"] == "failed"
    assert status["error_reason"] == "attempts_exhausted"
    assert status["error"].startswith("gave up after 2 attempts")
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 20, "the dead letter")
    ((properties, _),) = system.vhost.get_messages("images.jobs.dead", 5)
    assert properties.headers["x-failure-reason"] == "attempts_exhausted"
    assert properties.headers["x-attempts"] == 2  # as many as the error says
    assert system.services["worker-3"].running
