"""Upload N images, follow every job to its end, write one record per job and a summary.

    python load_test/bulk_upload.py --count 100 --workers 3
    python load_test/bulk_upload.py --count 20 --images test_images/ --operations "resize(width=400)"

`--workers W` first brings the system to W workers (tools/stack.sh scale, or docker compose with
`--compose`) and waits until W consume the work queue. Writes jobs.jsonl, summary.json and
queue_depth.jsonl into `--out`. Exit status 1 if a job was lost (neither completed nor failed
within `--timeout` s of its upload); failed jobs are results, not losses.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100, help="jobs to submit")
    parser.add_argument("--warmup", type=int, default=0, help="jobs run first and not recorded")
    cli.add_run_arguments(parser)
    args = parser.parse_args(argv)
    settings, api_url, images, broker = cli.open_run(args)
    try:
        workers = cli.prepare_workers(args, broker)
        if args.warmup:
            cli.console.print(f"warm-up: {args.warmup} jobs (not recorded)")
            with cli.RunProgress(args.warmup, quiet=True) as progress:
                cli.make_client(args, settings, progress).run_sync(
                    [Submission(images[i % len(images)]) for i in range(args.warmup)]
                )
        ready_at_start = cli.wait_for_empty_queue(broker)
    finally:
        broker.close()

    submissions = [Submission(images[i % len(images)]) for i in range(args.count)]
    jobs, samples, cpu = cli.run_submissions(args, settings, submissions)
    out = args.out or cli.default_out("bulk_upload", workers[0])
    return cli.finish(
        args,
        "bulk_upload",
        out,
        jobs,
        workers,
        samples,
        settings=cli.run_settings(args, api_url),
        warmup=args.warmup,
        queue_ready_at_start=ready_at_start,
        cpu=cpu,
    )


if __name__ == "__main__":
    sys.exit(main())
