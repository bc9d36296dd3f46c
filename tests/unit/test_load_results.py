"""The load tools' record of one job: what each client-side time means."""

import httpx

from load_test.client import retry_after
from load_test.results import COMPLETED, JobResult, cpu_identity, summarize


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


def test_summary_counts_uploads_that_waited_for_the_rate_limit() -> None:
    waited, direct = uploaded_job(), uploaded_job()
    waited.throttled_s = 12.5
    assert summarize([waited, direct, uploaded_job()], 1)["throttled"] == {"uploads": 1, "wait_s_max": 12.5}
    assert summarize([direct], 1)["throttled"] == {"uploads": 0, "wait_s_max": 0.0}


def test_retry_after_reads_the_429s_seconds_within_bounds() -> None:
    def refused(**headers: str) -> httpx.Response:
        return httpx.Response(429, headers=headers)

    assert retry_after(refused(**{"Retry-After": "7"})) == 7.0
    assert retry_after(refused(**{"Retry-After": "100000"})) == 60.0
    assert retry_after(refused(**{"Retry-After": "-3"})) == 0.1
    assert retry_after(refused(**{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 1.0
    assert retry_after(refused(**{"Retry-After": "nan"})) == 1.0
    assert retry_after(refused()) == 1.0


def _processor(number: int, model: str, flags: str) -> str:
    return (
        f"processor\t: {number}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: {model}\n"
        f"model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 1\nflags\t\t: {flags}\n\n"
    )


def test_cpu_identity_names_the_first_processor_and_its_vector_sets():
    cpuinfo = _processor(0, "167", "fpu sse4_2 avx2 avx512f avx512bw amx_tile") + _processor(1, "85", "fpu sse4_2")

    identity = cpu_identity(cpuinfo)

    assert identity == {
        "cpu": "Intel(R) Xeon(R) Processor",
        "cpu_id": "family 6 model 167 stepping 1",
        "simd": ["sse4_2", "avx2", "avx512f", "avx512bw", "amx_tile"],
    }


def test_cpu_identity_of_a_cpu_without_x86_fields_says_only_what_it_knows():
    identity = cpu_identity("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n\n")

    assert identity == {"simd": []}
