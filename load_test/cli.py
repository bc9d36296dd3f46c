"""What bulk_upload and burst_test share on the command line: options, setup, progress, output."""

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common.settings import Settings
from common.settings import settings as default_settings
from load_test.client import EVENTS, POLL, LoadClient, Submission, image_files
from load_test.results import JobResult, QueueSample, machine_info, summarize, write_run
from load_test.system import Broker, CpuMeter, QueueSampler, scale_workers

PROJECT_DIR = Path(__file__).resolve().parents[1]
# RESULTS_DIR moves the default result folders (a test runs the tools as written without writing here).
RESULTS_DIR = Path(os.environ.get("RESULTS_DIR") or PROJECT_DIR / "results")
EXIT_LOST = 1

console = Console(stderr=True, soft_wrap=True)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("the system")
    target.add_argument("--api-url", help=f"default: API_PUBLIC_URL ({default_settings.api_public_url})")
    target.add_argument("--vhost", help="RabbitMQ vhost of the system (default: RABBITMQ_VHOST)")
    target.add_argument("--management-url", help="RabbitMQ management API (default: from the settings)")
    target.add_argument(
        "--workers", type=int, help="bring the system to W workers first (default: record how many consume)"
    )
    target.add_argument(
        "--compose", action="store_true", help="scale with docker compose instead of tools/stack.sh"
    )

    jobs = parser.add_argument_group("the jobs")
    jobs.add_argument("--operations", help="operations for every job (default: the API's default)")
    jobs.add_argument("--images", type=Path, help="folder of images, used in turn (default: a generated set)")
    jobs.add_argument(
        "--profile", default="medium", help="generated set: size profile (test_images/generate.py)"
    )
    jobs.add_argument("--image-count", type=int, default=40, help="generated set: how many distinct images")
    jobs.add_argument("--seed", type=int, default=1, help="generated set: seed")

    client = parser.add_argument_group("the client")
    client.add_argument("--concurrency", type=int, default=8, help="uploads in flight at once")
    client.add_argument(
        "--follow", choices=[EVENTS, POLL], default=EVENTS, help="how jobs are followed to their end"
    )
    client.add_argument(
        "--poll-interval", type=float, default=0.5, help="seconds between status polls (--follow poll)"
    )
    client.add_argument(
        "--timeout", type=float, default=600, help="a job not ended this many s after upload is lost"
    )
    client.add_argument(
        "--sample-interval", type=float, default=0.5, help="seconds between queue-depth samples"
    )

    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="result folder (default: results/<tool>/<time>-w<W>)")
    output.add_argument("--label", help="name of the run in reports (default: the folder's name)")
    output.add_argument("--quiet", action="store_true", help="no progress bar")


def open_run(args: argparse.Namespace) -> tuple[Settings, str, list[Path], Broker]:
    """What every tool does first: logging, settings, a live API, the image set, the broker."""
    setup_logging()
    settings = settings_for(args)
    api_url = args.api_url or settings.api_public_url
    check_api(api_url)
    return settings, api_url, images_for(args), Broker(settings, management_url=args.management_url)


def run_submissions(
    args: argparse.Namespace, settings: Settings, submissions: list[Submission]
) -> tuple[list[JobResult], list[QueueSample], dict]:
    """Submits and follows every job while sampling the queue and the CPU; returns what was seen."""
    with (
        CpuMeter() as cpu,
        QueueSampler(settings, args.sample_interval, args.management_url) as sampler,
        RunProgress(len(submissions), args.quiet) as progress,
    ):
        jobs = make_client(args, settings, progress).run_sync(submissions)
    return jobs, sampler.samples, cpu.result


def settings_for(args: argparse.Namespace) -> Settings:
    update = {"rabbitmq_vhost": args.vhost} if args.vhost else {}
    return default_settings.model_copy(update=update)


def images_for(args: argparse.Namespace) -> list[Path]:
    if args.images:
        return image_files(args.images)
    sys.path.insert(0, str(PROJECT_DIR))
    from test_images.generate import generate

    console.print(f"generating {args.image_count} '{args.profile}' images (seed {args.seed}), cached")
    return image_files(generate(args.image_count, args.seed, args.profile))


def check_api(api_url: str, timeout: float = 30) -> None:
    """Waits up to `timeout` s for GET /ready to answer 200 (it flaps while a service reconnects)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"{api_url}/ready", timeout=10)
            if response.status_code == 200:
                return
            problem = f"not ready: {response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            problem = f"not reachable ({exc!r}); start the system with `make run`"
        if time.monotonic() > deadline:
            raise SystemExit(f"error: the API at {api_url} is {problem}")
        time.sleep(1)


def prepare_workers(args: argparse.Namespace, broker: Broker) -> tuple[int, str]:
    """(workers, how it is known): scaled to --workers, or the work queue's current consumers."""
    if args.workers is not None:
        console.print(
            f"scaling to {args.workers} workers ({'docker compose' if args.compose else 'tools/stack.sh'})"
        )
        scale_workers(args.workers, broker, compose=args.compose)
        return args.workers, "scaled"
    return broker.consumers(), "consumers"


def make_client(args: argparse.Namespace, settings: Settings, progress: "RunProgress") -> LoadClient:
    return LoadClient(
        args.api_url or settings.api_public_url,
        settings,
        operations=args.operations,
        concurrency=args.concurrency,
        follow=args.follow,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        on_uploaded=progress.uploaded,
        on_finished=progress.finished,
    )


def default_out(tool: str, workers: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return RESULTS_DIR / tool / f"{stamp}-w{workers}"


class RunProgress:
    """Two bars on stderr: uploaded and ended (completed / failed / lost counted as they end)."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            disable=quiet,
        )
        self._uploads = self._progress.add_task("uploaded", total=total, detail="")
        self._ends = self._progress.add_task("ended", total=total, detail="")
        self._counts = {"completed": 0, "failed": 0, "rejected": 0, "lost": 0}

    def __enter__(self) -> "RunProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def uploaded(self, job: JobResult) -> None:
        self._progress.advance(self._uploads)

    def finished(self, job: JobResult) -> None:
        self._counts[job.status] = self._counts.get(job.status, 0) + 1
        detail = " ".join(f"{k} {v}" for k, v in self._counts.items() if v)
        self._progress.update(self._ends, advance=1, detail=detail)


def run_settings(args: argparse.Namespace, api_url: str) -> dict:
    return {
        "api_url": api_url,
        "operations": args.operations,
        "concurrency": args.concurrency,
        "follow": args.follow,
        "poll_interval_s": args.poll_interval if args.follow == POLL else None,
        "timeout_s": args.timeout,
        "images": str(args.images)
        if args.images
        else f"generated:{args.seed}-{args.profile}-{args.image_count}",
    }


def finish(
    args: argparse.Namespace,
    tool: str,
    out: Path,
    jobs: Sequence[JobResult],
    workers: tuple[int, str],
    queue: Sequence[QueueSample],
    **extra,
) -> int:
    """Writes the result folder, prints the outcome; the exit status is non-zero if a job was lost."""
    loads = [q.load_1m for q in queue if q.load_1m is not None]
    summary = summarize(
        jobs,
        workers[0],
        tool=tool,
        label=args.label or out.name,
        workers_source=workers[1],
        started_at=datetime.fromtimestamp(min(j.submitted_at for j in jobs), UTC).isoformat(),
        machine=machine_info(),
        load_average_1m={"mean": round(sum(loads) / len(loads), 2), "max": max(loads)} if loads else None,
        **extra,
    )
    write_run(out, jobs, summary, queue)
    latency = summary["latency_ms"]
    console.print(
        f"{summary['count']} jobs, {workers[0]} workers: {summary['completed']} completed, "
        f"{summary['failed']} failed, {summary['lost']} lost in {summary['duration_s']} s — "
        f"{summary['throughput_img_s']} img/s, latency p50 {latency['p50']} / p95 {latency['p95']} / "
        f"p99 {latency['p99']} ms"
    )
    throttled = summary["throttled"]
    if throttled["uploads"]:
        console.print(
            f"{throttled['uploads']} uploads waited for the API's upload rate limit (up to "
            f"{throttled['wait_s_max']:g} s each; RATE_LIMIT_UPLOADS, per client); their latency includes the wait"
        )
    console.print(f"results: {out}")
    if summary["lost"]:
        console.print(f"[red]{summary['lost']} job(s) lost (no end within {args.timeout:g} s):[/red]")
        for lost in summary["lost_jobs"]:
            console.print(f"  job {lost['job_id']} ({lost['image']}): {lost['error']}")
        return EXIT_LOST
    return 0


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def wait_for_empty_queue(broker: Broker, timeout: float = 120) -> int:
    """Lets leftovers of an earlier run drain, so they do not count against this one."""
    left = broker.wait_until_empty(timeout)
    if left:
        console.print(f"[yellow]warning: {left} messages still wait in the work queue at the start[/yellow]")
    return left
