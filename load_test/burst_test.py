"""Bursts: K bursts of B uploads, S seconds apart; queue depth over time, drain time per burst.

    python load_test/burst_test.py --burst-size 50 --interval 5 --bursts 3

Burst k is submitted at k×S seconds (all B uploads at once, up to --concurrency in flight). The
work queue is sampled throughout (ready messages, exact, over AMQP; unacknowledged ones from the
management API). Per burst: upload time, drain time (burst start → its last job ended) and
latency percentiles. Same output as bulk_upload (jobs.jsonl, summary.json with `bursts`,
queue_depth.jsonl); exit status 1 if a job was lost.
"""

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tools.project_python import use_project_python

    use_project_python()

from load_test import cli
from load_test.client import Submission
from load_test.results import COMPLETED, LOST, JobResult, percentiles


def burst_summary(index: int, jobs: list[JobResult]) -> dict:
    start = min(job.submitted_at for job in jobs)
    uploaded = [job.uploaded_at for job in jobs if job.uploaded_at]
    ends = [job.end_at for job in jobs if job.finished and job.end_at]
    return {
        "burst": index,
        "start_at": start,
        "count": len(jobs),
        "completed": sum(job.status == COMPLETED for job in jobs),
        "failed": sum(job.finished and job.status != COMPLETED for job in jobs),
        "lost": sum(job.status == LOST for job in jobs),
        "upload_s": round(max(uploaded) - start, 3) if uploaded else None,
        "drain_s": round(max(ends) - start, 3) if ends else None,
        "latency_ms": percentiles(job.latency_ms for job in jobs if job.finished),
        "server_total_ms": percentiles(job.server_total_ms for job in jobs if job.finished),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst-size", type=int, default=50, help="uploads per burst (B)")
    parser.add_argument("--interval", type=float, default=5, help="seconds between burst starts (S)")
    parser.add_argument("--bursts", type=int, default=3, help="number of bursts (K)")
    cli.add_run_arguments(parser)
    parser.set_defaults(concurrency=16)
    args = parser.parse_args(argv)
    settings, api_url, images, broker = cli.open_run(args)
    try:
        workers = cli.prepare_workers(args, broker)
        ready_at_start = cli.wait_for_empty_queue(broker)
    finally:
        broker.close()

    submissions = [
        Submission(images[(k * args.burst_size + i) % len(images)], at=k * args.interval, burst=k)
        for k in range(args.bursts)
        for i in range(args.burst_size)
    ]
    jobs, samples, cpu = cli.run_submissions(args, settings, submissions)
    bursts = [burst_summary(k, [j for j in jobs if j.burst == k]) for k in range(args.bursts)]
    for burst in bursts:
        cli.console.print(
            f"burst {burst['burst']}: {burst['count']} jobs uploaded in {burst['upload_s']} s, "
            f"drained in {burst['drain_s']} s, latency p50 {burst['latency_ms']['p50']} / "
            f"p95 {burst['latency_ms']['p95']} ms"
        )
    out = args.out or cli.default_out("burst_test", workers[0])
    return cli.finish(
        args,
        "burst_test",
        out,
        jobs,
        workers,
        samples,
        settings={
            **cli.run_settings(args, api_url),
            "burst_size": args.burst_size,
            "interval_s": args.interval,
            "bursts": args.bursts,
        },
        bursts=bursts,
        queue_ready_at_start=ready_at_start,
        cpu=cpu,
    )


if __name__ == "__main__":
    sys.exit(main())
