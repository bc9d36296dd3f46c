"""What a target rate needs, from the measured cost of one job (docs/capacity/measured.json).

    python -m tools.capacity --rate 1000 --mp 12
    python -m tools.capacity --rate 100 1000 10000 --mp 12 --operations sharpen --markdown

The measured figures (`python -m bench.capacity`, make capacity-measure) are CPU milliseconds per
job for each part of the system, net of idle, on a three-node RabbitMQ cluster with quorum queues
and a replicated SeaweedFS cluster, for 2, 12 and 24 MP photos with the default operations (and
12 MP with a sharpen filter added). Between measured sizes the cost is interpolated linearly in
megapixels, beyond them extrapolated from the nearest two. Everything else is an assumption about
the machines you run on, given as an option and printed with the table: cores per broker or
storage node, network per storage node, how busy a core may run.
"""

import argparse
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "docs" / "capacity" / "measured.json"
GROUPS = ("workers", "api", "notifier", "broker", "objectstore")
PROFILES = {"default": "default", "sharpen": "sharpen"}
# Per job: the job message and the completion event are each published, delivered and acked once.
MESSAGES_PER_JOB = 2
# Per job the store writes the original, the result and the record three times (queued,
# processing, completed), and reads the original, the record and (once, by the client) the result.
RECORD_BYTES = 1500
RECORD_WRITES = 3


@dataclass(frozen=True)
class JobCost:
    """What one job of a given size costs: CPU seconds per group, bytes in and out."""

    megapixels: float
    cpu_s: dict[str, float]
    original_bytes: float
    result_bytes: float


@dataclass(frozen=True)
class Assumptions:
    core_utilisation: float = 0.7  # run cores at most this busy: headroom for bursts and failover
    broker_node_cores: int = 8
    broker_nodes: int = 3  # quorum queues: every message on every node of the cluster
    storage_node_cores: int = 16
    storage_node_gbps: float = 10.0
    storage_replicas: int = 2  # replication 001 (SeaweedFS) or erasure coding's ~2x (MinIO EC 4+4)
    min_storage_nodes: int = 3  # one can be lost and writes go on
    api_replica_cores: float = 1.0
    downloads_per_job: int = 1


@dataclass
class Plan:
    rate: float
    cost: JobCost
    worker_cores: int = 0
    api_replicas: int = 0
    notifier_replicas: int = 0
    broker_cores: float = 0.0
    broker_clusters: int = 0
    messages_per_s: float = 0.0
    storage_cores: float = 0.0
    storage_write_mb_s: float = 0.0
    storage_read_mb_s: float = 0.0
    storage_nodes_for_cpu: int = 0
    storage_nodes_for_network: int = 0
    storage_nodes: int = 0
    ingress_mb_s: float = 0.0
    ceilings: dict[str, float] = field(default_factory=dict)  # img/s one unit of each part carries
    # The shared, stateful parts against their smallest deployment (one broker cluster, the minimum
    # of storage nodes): how many times it this rate needs. Workers, API and notifier are
    # stateless and scale by adding pods (KEDA, the HPA); these are what runs out next.
    pressure: dict[str, float] = field(default_factory=dict)

    @property
    def bottleneck(self) -> str:
        """The shared part closest to (or furthest past) its smallest deployment's capacity."""
        return max(self.pressure, key=self.pressure.get)


def load_costs(path: Path, operations: str) -> list[JobCost]:
    """The measured runs for one set of operations, by size; `sharpen` is known at 12 MP only and
    is scaled from the default runs by its ratio there."""
    runs = json.loads(path.read_text())["runs"]
    default = [_cost(run) for label, run in runs.items() if label.endswith("-default")]
    if not default:
        raise ValueError(f"{path} has no runs with the default operations")
    default.sort(key=lambda c: c.megapixels)
    if operations == "default":
        return default
    labelled = [(label, run) for label, run in runs.items() if label.endswith(f"-{operations}")]
    if not labelled:
        raise ValueError(f"{path} has no runs with operations {operations!r}")
    measured = _cost(labelled[0][1])
    base = interpolate(default, measured.megapixels)
    ratio = {g: measured.cpu_s[g] / base.cpu_s[g] if base.cpu_s[g] else 1.0 for g in GROUPS}
    return [
        JobCost(c.megapixels, {g: c.cpu_s[g] * ratio[g] for g in GROUPS}, c.original_bytes, c.result_bytes)
        for c in default
    ]


def _cost(run: dict) -> JobCost:
    cpu = run.get("cpu_ms_per_job_net") or run["cpu_ms_per_job"]
    return JobCost(
        float(run["megapixels"]),
        {g: float(cpu[g]) / 1000 for g in GROUPS},
        float(run["original_bytes"]),
        float(run["result_bytes"]),
    )


def interpolate(costs: list[JobCost], megapixels: float) -> JobCost:
    """Linear in megapixels between the two nearest measured sizes (extrapolated past the ends,
    never below zero); one measured size scales in proportion."""
    if megapixels <= 0:
        raise ValueError("megapixels must be positive")
    if len(costs) == 1:
        (only,) = costs
        scale = megapixels / only.megapixels
        return JobCost(
            megapixels,
            {g: v * scale for g, v in only.cpu_s.items()},
            only.original_bytes * scale,
            only.result_bytes,
        )
    ordered = sorted(costs, key=lambda c: c.megapixels)
    low, high = ordered[0], ordered[1]
    for first, second in itertools.pairwise(ordered):
        low, high = first, second
        if megapixels <= second.megapixels:
            break
    t = (megapixels - low.megapixels) / (high.megapixels - low.megapixels)

    def mix(a: float, b: float) -> float:
        return max(0.0, a + (b - a) * t)

    return JobCost(
        megapixels,
        {g: mix(low.cpu_s[g], high.cpu_s[g]) for g in GROUPS},
        mix(low.original_bytes, high.original_bytes),
        mix(low.result_bytes, high.result_bytes),
    )


def _whole(units: float) -> int:
    """Machines to cover `units` (rounded up; 10.000000000000002 is 10, not 11)."""
    return math.ceil(round(units, 9))


def plan(rate: float, cost: JobCost, assume: Assumptions = Assumptions()) -> Plan:
    if rate <= 0:
        raise ValueError("rate must be positive")
    u = assume.core_utilisation
    result = Plan(rate, cost)
    result.worker_cores = _whole(rate * cost.cpu_s["workers"] / u)
    result.api_replicas = max(2, _whole(rate * cost.cpu_s["api"] / (u * assume.api_replica_cores)))
    result.notifier_replicas = max(1, _whole(rate * cost.cpu_s["notifier"] / u))
    result.broker_cores = rate * cost.cpu_s["broker"]
    cluster_cores = assume.broker_nodes * assume.broker_node_cores * u
    result.broker_clusters = max(1, _whole(result.broker_cores / cluster_cores))
    result.messages_per_s = rate * MESSAGES_PER_JOB
    result.storage_cores = rate * cost.cpu_s["objectstore"]
    written = cost.original_bytes + cost.result_bytes + RECORD_WRITES * RECORD_BYTES
    read = cost.original_bytes + RECORD_BYTES + assume.downloads_per_job * cost.result_bytes
    result.storage_write_mb_s = rate * written * assume.storage_replicas / 1e6
    result.storage_read_mb_s = rate * read / 1e6
    node_mb_s = assume.storage_node_gbps * 1000 / 8 * u
    result.storage_nodes_for_cpu = _whole(result.storage_cores / (assume.storage_node_cores * u))
    result.storage_nodes_for_network = _whole(
        (result.storage_write_mb_s + result.storage_read_mb_s) / node_mb_s
    )
    result.storage_nodes = max(
        assume.min_storage_nodes, result.storage_nodes_for_cpu, result.storage_nodes_for_network
    )
    result.ingress_mb_s = rate * cost.original_bytes / 1e6
    result.ceilings = {
        "worker core": u / cost.cpu_s["workers"],
        "API replica": u * assume.api_replica_cores / cost.cpu_s["api"],
        "broker cluster (CPU)": cluster_cores / cost.cpu_s["broker"] if cost.cpu_s["broker"] else math.inf,
        "storage node (CPU)": assume.storage_node_cores * u / cost.cpu_s["objectstore"],
        "storage node (network)": node_mb_s * rate / (result.storage_write_mb_s + result.storage_read_mb_s),
    }
    result.pressure = {
        "broker CPU": result.broker_cores / cluster_cores,
        "storage CPU": result.storage_cores / (assume.storage_node_cores * u * assume.min_storage_nodes),
        "storage network": (result.storage_write_mb_s + result.storage_read_mb_s)
        / (node_mb_s * assume.min_storage_nodes),
    }
    return result


ROWS = (
    ("worker cores (1 worker pod per core)", lambda p: f"{p.worker_cores:,}"),
    ("API replicas (1 core each)", lambda p: f"{p.api_replicas:,}"),
    ("notifier replicas", lambda p: f"{p.notifier_replicas:,}"),
    ("broker CPU, cores (all nodes)", lambda p: f"{p.broker_cores:,.1f}"),
    ("broker clusters (3 nodes each)", lambda p: f"{p.broker_clusters:,}"),
    ("broker messages/s (published; as many delivered)", lambda p: f"{p.messages_per_s:,.0f}"),
    ("storage CPU, cores", lambda p: f"{p.storage_cores:,.1f}"),
    (
        "storage writes MB/s (with replicas) / reads MB/s",
        lambda p: f"{p.storage_write_mb_s:,.0f} / {p.storage_read_mb_s:,.0f}",
    ),
    (
        "storage nodes (for CPU / network / chosen)",
        lambda p: f"{p.storage_nodes_for_cpu:,} / {p.storage_nodes_for_network:,} / {p.storage_nodes:,}",
    ),
    ("upload ingress MB/s", lambda p: f"{p.ingress_mb_s:,.0f}"),
    (
        "first shared bottleneck (x one broker cluster / 3 storage nodes)",
        lambda p: f"{p.bottleneck} ({p.pressure[p.bottleneck]:,.1f}x)",
    ),
)


def table(plans: list[Plan], markdown: bool) -> str:
    header = ["", *(f"{p.rate:,.0f} img/s" for p in plans)]
    rows = [[name, *(fmt(p) for p in plans)] for name, fmt in ROWS]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * len(plans)) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, nargs="+", required=True, help="target images per second")
    parser.add_argument("--mp", type=float, default=12.0, help="megapixels per image (default 12)")
    parser.add_argument(
        "--operations",
        choices=sorted(PROFILES),
        default="default",
        help="default: resize to 800 px + watermark; sharpen: with a sharpen filter too",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="measured figures (make capacity-measure)")
    parser.add_argument("--markdown", action="store_true")
    defaults = Assumptions()
    for name, value in vars(defaults).items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"assumed (default {value})"
        )
    args = parser.parse_args(argv)
    if not 0 < args.core_utilisation <= 1:
        parser.error("--core-utilisation must be in (0, 1]")
    if args.mp <= 0 or args.mp > 1000 or any(r <= 0 or r > 1e7 for r in args.rate):
        parser.error("--mp must be in (0, 1000] and every --rate in (0, 10,000,000]")
    assume = Assumptions(**{name: getattr(args, name) for name in vars(defaults)})
    cost = interpolate(load_costs(args.data, args.operations), args.mp)
    plans = [plan(rate, cost, assume) for rate in args.rate]
    per_job = ", ".join(f"{g} {cost.cpu_s[g] * 1000:.1f}" for g in GROUPS)
    print(f"{args.mp:g} MP photos, operations: {args.operations}; CPU ms per job: {per_job}")
    print(f"from {args.data}; assumed: " + ", ".join(f"{k}={v}" for k, v in vars(assume).items()))
    print()
    print(table(plans, args.markdown))
    print()
    print("One unit carries, in img/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in plans[0].ceilings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
