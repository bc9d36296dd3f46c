"""Bounded work per request: a full queue, enlargements, towers of combining marks, one long
operation, and objects that expire — each as a client would try it, on a running system."""

import io

import httpx
import pytest
from PIL import Image

from common.operations import Watermark
from harness.processes import family_peak_rss_mb, wait_for
from harness.procs import children
from tests.support.images import png_of

pytestmark = pytest.mark.integration


def test_a_full_queue_answers_503_and_keeps_nothing(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False, MAX_QUEUED_JOBS="2")
    accepted = [system.upload(sample_jpg, operations="resize(width=40)") for _ in range(2)]
    assert [r.status_code for r in accepted] == [202, 202]
    refused = system.upload(sample_jpg, operations="resize(width=40)")
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["detail"].startswith("the job queue is full (2 jobs waiting); the job was not queued")
    # Nothing of the refused job is left: two records, two originals, two messages.
    assert len(system.store.list("jobs/")) == len(system.store.list("originals/")) == 2
    assert system.vhost.message_count("images.jobs.work") == 2
    system.start_worker("worker-a")
    for response in accepted:
        assert system.wait_finished(response.json()["job_id"])["status"] == "completed"
    assert system.upload(sample_jpg, operations="resize(width=40)").status_code == 202


def test_retries_are_not_subject_to_the_queue_limit(make_system, sample_jpg) -> None:
    """A job coming back from a delay queue has a queue of its own: a full work queue never drops it."""
    system = make_system(workers=(), notifier=False, MAX_QUEUED_JOBS="1")
    job_id = system.upload(sample_jpg, operations="resize(width=40)").json()["job_id"]
    message = system.vhost.get_messages("images.jobs.work", 1)[0]
    # As a worker does after a transient failure: to the shortest delay queue.
    system.vhost.publish("images.retry", "retry.200ms", message[1], message_id=job_id, headers={"x-attempt": 1})
    wait_for(lambda: system.vhost.message_count("images.jobs.retried") == 1, 20, "the retry to come back")
    assert system.vhost.message_count("images.jobs.work") == 1  # still full, and nothing lost
    system.start_worker("worker-a")
    assert system.wait_finished(job_id)["status"] == "completed"
    wait_for(lambda: system.vhost.message_count("images.jobs.retried") == 0, 20, "the duplicate to be settled")


def test_an_enlargement_past_the_output_limit_is_422(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False, MAX_OUTPUT_PIXELS="1000000")
    response = system.upload(sample_jpg, operations="resize(width=2000,height=2000,fit=fill,upscale=true)")
    assert response.status_code == 422
    assert "2000x2000 = 4000000 pixels; outputs are limited to 1000000 pixels" in response.json()["detail"]


def test_the_worker_bounds_outputs_the_api_could_not_foresee(make_system) -> None:
    system = make_system(workers=("worker-a",), notifier=False, MAX_OUTPUT_PIXELS="1000000")
    # One side only: the other follows from the aspect ratio, known once the image is decoded.
    from common.operations import Resize

    job_id = system.submit_directly(png_of((100, 400)), [Resize(width=1000, upscale=True)], 100, 400)
    status = system.wait_finished(job_id)
    assert status["status"] == "failed"
    assert status["error_reason"] == "too_many_pixels"
    assert "resize would produce 1000×4000 = 4,000,000 pixels; the output limit is 1,000,000" in status["error"]


def test_towers_of_combining_marks_are_refused(system, sample_jpg) -> None:
    tower = "a" + "\u0301" * 99
    response = system.upload(sample_jpg, operations=f'watermark(text="{tower}",size=0.5,position=tile)')
    assert response.status_code == 422
    assert "text stacks more than 3 combining marks on one character" in response.json()["detail"]


def test_the_largest_allowed_stamp_keeps_the_worker_small(make_system, tmp_path) -> None:
    """The most a text may ask for (100 characters, three marks on each base) at the largest size,
    tiled over a 1000×1000 image: the stamp is bounded by the image, and so is the memory."""
    system = make_system(workers=("worker-a",), notifier=False)
    text = ("a" + "\u0301\u0302\u0303") * 25
    assert Watermark(text=text)  # allowed as it stands
    image = tmp_path / "square.png"
    image.write_bytes(png_of((1000, 1000)))
    response = system.upload(image, operations=f'watermark(text="{text}",size=0.5,position=tile)')
    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"])
    assert status["status"] == "completed", status
    assert (status["result"]["width"], status["result"]["height"]) == (1000, 1000)
    assert family_peak_rss_mb(system.services["worker-a"].process.pid) < 200


def test_one_long_operation_is_stopped_at_the_time_limit(make_system, tmp_path, sample_jpg) -> None:
    """One Pillow call (an enlargement to 100 MP) outlasts the limit: the image process is killed
    mid-call, the job fails with time_limit, and a fresh process takes the next job."""
    # The worker kills the image process at the limit plus KILL_MARGIN_S (0.5 s); the enlargement
    # must outlast that, or the pipeline's own check after it fails the job instead ("before
    # encoding"). It takes 0.9-1.0 s of CPU on the fastest host seen, so the limit is kept small.
    system = make_system(workers=("worker-a",), notifier=False, JOB_TIME_LIMIT_S="0.2")
    worker = system.services["worker-a"].process.pid
    wait_for(lambda: children(worker), 30, "the image process")
    (first_child,) = children(worker)
    small = tmp_path / "small.png"
    small.write_bytes(png_of((1000, 1000)))
    response = system.upload(small, operations="resize(width=10000,height=10000,fit=fill,upscale=true)")
    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"], timeout=60)
    assert status["status"] == "failed"
    assert status["error_reason"] == "time_limit"
    assert "ran out of its time limit (0.2 s) while processing" in status["error"]
    assert first_child not in children(worker)
    follow_up = system.upload(sample_jpg, operations="resize(width=60)").json()["job_id"]
    assert system.wait_finished(follow_up)["status"] == "completed"


def test_objects_expire_after_the_retention_period(make_system, sample_jpg) -> None:
    system = make_system(
        workers=("worker-a",), notifier=False, RETENTION_DAYS=str(3 / 86400), RETENTION_SWEEP_INTERVAL_S="1"
    )
    job_id = system.upload(sample_jpg, operations="resize(width=50)").json()["job_id"]
    status = system.wait_finished(job_id)
    assert status["status"] == "completed"
    assert httpx.get(status["result"]["download_url"]).status_code == 200

    def gone() -> bool:
        with system.http as client:
            return client.get(f"/status/{job_id}").status_code == 404

    wait_for(gone, 60, "the job to expire", interval=0.5)
    assert [system.store.list(prefix) for prefix in ("jobs/", "originals/", "results/")] == [[], [], []]
    assert httpx.get(status["result"]["download_url"]).status_code == 404


def test_results_are_served_with_nosniff(system, sample_jpg) -> None:
    job_id = system.upload(sample_jpg, operations="resize(width=30)").json()["job_id"]
    assert system.wait_finished(job_id)["status"] == "completed"
    with system.http as client:
        result = client.get(f"/result/{job_id}")
    assert result.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(result.content)).width == 30
