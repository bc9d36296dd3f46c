"""bench/profile.py sorts py-spy stacks into phases: each sample where its own work is."""

from bench.profile import API_CPU_PHASES, breakdown

OUTER = (
    "Runner.run (asyncio/runners.py:118);UploadMetrics.__call__ (api/metrics.py:107);"
    "UploadGate.__call__ (api/limits.py:80)"
)


def test_work_under_the_metrics_middleware_is_the_frameworks_unless_the_counters_run() -> None:
    samples = [
        (f"{OUTER};solve_dependencies (fastapi/dependencies/utils.py:600)", 6),
        (f"{OUTER};RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:500)", 2),
        ("Runner.run (asyncio/runners.py:118);UploadMetrics.__call__ (api/metrics.py:113);"
         "UploadCounters.accepted (api/metrics.py:59);MetricWrapperBase.labels (prometheus_client/metrics.py:190)", 1),
        (f"{OUTER};upload (api/routes/jobs.py:90);ObjectStore.put_file (common/storage.py:140)", 3),
    ]

    phases = breakdown(samples, API_CPU_PHASES, per=1)

    # 250 samples per second: one sample is 4 ms.
    assert phases == {"store original": 12.0, "upload counters (metrics)": 4.0, "HTTP server, ASGI, FastAPI": 32.0}
