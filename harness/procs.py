"""What the benchmark, the load tools and the tests read about processes from /proc: CPU time,
resident and peak resident memory, open file descriptors, children, and the machine's own CPU ticks."""

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (its threads included, children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had (since start or `reset_peak_rss`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise ValueError(f"no VmHWM for {pid}")


def rss_mb(pid: int) -> float:
    """VmRSS: the resident memory of the process now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise ValueError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors the process holds open (files, sockets, pipes)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def reset_peak_rss(pid: int) -> None:
    """Starts VmHWM again from the current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue  # the thread ended while the list was read
    return found


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid → (parent pid, CPU ticks used so far, command name), for every process of the machine."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), name)
    return table


def descendants(table: dict[int, tuple[int, int, str]], roots: set[int]) -> set[int]:
    """`roots` and every process below them in `table`."""
    found = set(roots)
    changed = True
    while changed:
        below = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        found |= below
        changed = bool(below)
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values[:8]) - idle, sum(values[:8])
