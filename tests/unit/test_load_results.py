"""The load tools' record of one job: what each client-side time means."""

from load_test.results import COMPLETED, JobResult


def uploaded_job() -> JobResult:
    job = JobResult(image="a.jpg", image_bytes=100, submitted_at=100.0, job_id="j1", status=COMPLETED)
    job.uploaded_at = 100.5
    return job


def test_observe_end_before_the_202_counts_from_the_202() -> None:
    job = uploaded_job()
    job.observe_end(100.2)  # the worker's event beat the API's response to the client
    assert job.observed_at == 100.5
    assert job.submitted_at <= job.uploaded_at <= job.observed_at
    assert (job.upload_ms, job.latency_ms) == (500.0, 500.0)


def test_observe_end_after_the_202_keeps_its_time() -> None:
    job = uploaded_job()
    job.observe_end(101.25)
    assert job.observed_at == 101.25
    assert job.latency_ms == 1250.0
