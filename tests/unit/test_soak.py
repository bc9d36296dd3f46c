"""The soak's verdicts (bench/soak.py) from made-up samples and jobs: each check can fail."""

from bench.soak import Sample, verdicts
from load_test.results import COMPLETED, LOST, JobResult

START = 1_000_000.0
SECONDS = 100.0


def samples(rss: list[float], fds: list[int] | None = None, connections: list[int] | None = None) -> list[Sample]:
    fds = fds or [20] * len(rss)
    connections = connections or [5] * len(rss)
    return [
        Sample(at=index * SECONDS / len(rss), rss_mb={"api": 100.0, "worker-1": value}, fds={"api": 30, "worker-1": fd},
               connections=connection, channels=connection, queued=0)
        for index, (value, fd, connection) in enumerate(zip(rss, fds, connections, strict=True))
    ]


def jobs(latencies_ms: list[float], status: str = COMPLETED) -> list[JobResult]:
    """One job per second from the start, each ending `latency` later."""
    return [
        JobResult(image="a.jpg", image_bytes=1, submitted_at=START + index, observed_at=START + index + ms / 1000,
                  status=status)
        for index, ms in enumerate(latencies_ms)
    ]


def steady_jobs() -> list[JobResult]:
    return jobs([200.0] * 100)


def test_soak_verdicts_pass_a_steady_run() -> None:
    result = verdicts(steady_jobs(), samples([80, 90, 85, 90, 84, 90, 86, 90, 85, 90]), START, SECONDS, 0.2)
    assert result["pass"] == {
        "no_job_lost": True, "memory_flat": True, "p99_steady": True, "fds_constant": True,
        "broker_connections_constant": True,
    }
    assert result["completed"] == 100 and result["lost"] == 0
    assert result["p99_ratio"] == 1.0


def test_soak_verdicts_catch_memory_that_keeps_growing() -> None:
    result = verdicts(steady_jobs(), samples([80 + 5 * index for index in range(10)]), START, SECONDS, 0.2)
    assert result["rss_growth"]["worker-1"] > 0.1 and result["rss_growth"]["api"] == 0
    assert result["pass"]["memory_flat"] is False


def test_soak_verdicts_catch_a_lost_job() -> None:
    result = verdicts(steady_jobs()[:-1] + jobs([0.0], status=LOST), samples([80] * 10), START, SECONDS, 0.2)
    assert result["lost"] == 1 and result["pass"]["no_job_lost"] is False


def test_soak_verdicts_catch_latency_that_climbs() -> None:
    result = verdicts(jobs([200.0 + 10 * index for index in range(100)]), samples([80] * 10), START, SECONDS, 0.2)
    assert result["p99_ms_second_half"] > 1.5 * result["p99_ms_first_half"]
    assert result["pass"]["p99_steady"] is False


def test_soak_verdicts_catch_leaking_descriptors_and_connections() -> None:
    result = verdicts(
        steady_jobs(), samples([80] * 10, fds=[20 + 2 * index for index in range(10)], connections=[5] * 9 + [6]),
        START, SECONDS, 0.2,
    )
    assert result["fd_growth"] == {"api": 0, "worker-1": 14}
    assert result["connections_seen"] == [5, 6]
    assert result["pass"]["fds_constant"] is False and result["pass"]["broker_connections_constant"] is False
