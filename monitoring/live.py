"""What both monitors share: running from a checkout, the polling loop, and small renderers."""

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 30) -> str:
    """The last `width` values as block characters, scaled to their maximum (a blank for a gap)."""
    values = list(values)[-width:]
    peak = max((v for v in values if v is not None), default=0) or 1
    top = len(SPARK) - 1
    return "".join(" " if v is None else SPARK[min(int(v / peak * top), top)] for v in values)


def run(
    poll: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], RenderableType],
    interval: float,
    once: bool,
    as_json: bool,
) -> int:
    """Polls every `interval` s: a live view, JSON lines (`as_json`), or one poll (`once`)."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    if once:
        sample = poll()
        if as_json:
            print(json.dumps(sample, default=str))
        else:
            console.print(render(sample))
        return 0
    try:
        if as_json:
            while True:
                print(json.dumps(poll(), default=str), flush=True)
                time.sleep(interval)
        if not console.is_terminal:  # piped or redirected: one view per reading, as it comes
            while True:
                console.print(render(poll()))
                sys.stdout.flush()
                time.sleep(interval)
        with Live(render(poll()), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(poll()))
    except KeyboardInterrupt:
        return 0


def fmt(value: float | int | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.{digits}f}{unit}"
