"""Live view of the system's RabbitMQ queues, from the management API.

    python monitoring/queue_monitor.py                  # refreshes every 2 s; Ctrl-C to quit
    python monitoring/queue_monitor.py --once --json    # one reading as JSON, for scripts

Per queue (work, retry delays, dead letters, notifications): messages ready and unacknowledged,
consumers, in/out rates (publish, deliver, ack per second, as sampled by the broker), and a short
history of its depth (ready + unacked). A missing queue is shown as missing; when the management
API does not answer, the view says so and keeps polling (`--once` still exits 0, with
"available": false and the error).

Connection settings are the services' own (common/settings.py), from the environment or ./.env:
RABBITMQ_HOST, RABBITMQ_MANAGEMENT_PORT, RABBITMQ_USER, RABBITMQ_PASSWORD, RABBITMQ_VHOST, and
MAX_ATTEMPTS / RETRY_BASE_DELAY_MS, which name the retry queues.
"""

import argparse
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python monitoring/queue_monitor.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tools.project_python import use_project_python

    use_project_python()

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from common.observability.management import ROLE_DEAD_LETTER, ManagementApi, read_queues
from common.settings import settings
from monitoring.live import fmt, run, sparkline


class QueueMonitor:
    def __init__(self, history: int) -> None:
        self._client = ManagementApi.from_settings(settings.broker, timeout=3.0)
        self._history: dict[str, deque[int | None]] = {}
        self._size = history

    def poll(self) -> dict[str, Any]:
        broker = read_queues(settings.broker, self._client)
        reading = broker.as_dict()
        reading["management_url"] = settings.broker.management_url
        reading["vhost"] = settings.rabbitmq_vhost
        names = set(self._history) | {q.name for q in broker.queues}
        for name in names:
            queue = broker.queue(name)
            value = queue.messages if queue is not None and queue.exists else None
            self._history.setdefault(name, deque(maxlen=self._size)).append(value)
        reading["history"] = {name: list(values) for name, values in self._history.items()}
        return reading


def render(reading: dict[str, Any]) -> RenderableType:
    when = time.strftime("%H:%M:%S", time.localtime(reading["fetched_at"]))
    header = Text(f"{reading['management_url']}  vhost {reading['vhost']}  {when}", style="bold")
    if not reading["available"]:
        return Group(header, Text(f"UNAVAILABLE: {reading['error']}", style="bold red"))
    dead = reading["dead_letter_messages"]
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("queue", no_wrap=True)
    for column in ("ready", "unacked", "consumers", "in/s", "deliver/s", "ack/s"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("depth history", no_wrap=True)
    for name, queue in reading["queues"].items():
        if not queue["exists"]:
            table.add_row(name, Text("missing", style="yellow"), "", "", "", "", "", "")
            continue
        style = "red" if queue["role"] == ROLE_DEAD_LETTER and queue["ready"] else None
        table.add_row(
            Text(name, style=style), str(queue["ready"]), str(queue["unacked"]), str(queue["consumers"]),
            fmt(queue["publish_rate"], 1), fmt(queue["deliver_rate"], 1), fmt(queue["ack_rate"], 1),
            sparkline(reading["history"].get(name, [])),
        )
    footer = Text(f"dead letters: {dead}", style="bold red" if dead else "green")
    return Group(header, table, footer)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="queue_monitor.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", type=float, default=2.0, metavar="S",
                        help="seconds between readings (default 2; the broker itself refreshes every ~5 s)")
    parser.add_argument("--once", action="store_true", help="take one reading, print it and exit 0")
    parser.add_argument("--json", action="store_true",
                        help="print JSON instead of the live table: one object, or one line per reading")
    parser.add_argument("--history", type=int, default=30, metavar="N",
                        help="readings kept for each queue's history column (default 30)")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.history < 1:
        parser.error("--interval must be > 0 and --history >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    monitor = QueueMonitor(args.history)
    return run(monitor.poll, render, args.interval, args.once, args.json)


if __name__ == "__main__":
    sys.exit(main())
