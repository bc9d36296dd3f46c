"""The Grafana dashboard's queries, and the metric names the code exports, for comparing the two."""

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from harness.processes import PROJECT_DIR

DASHBOARD = PROJECT_DIR / "monitoring" / "grafana" / "dashboards" / "imgpipe.json"
METRIC_NAME = re.compile(r"\bimgpipe_[a-zA-Z0-9_]+")


def panels(dashboard: dict) -> list[dict]:
    """Every panel, including those inside collapsed rows."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def panel_queries(path: Path = DASHBOARD) -> dict[str, list[str]]:
    """Panel title -> its PromQL expressions (rows, which have no targets, are left out)."""
    dashboard = json.loads(path.read_text())
    return {
        panel["title"]: [target["expr"] for target in panel.get("targets", [])]
        for panel in panels(dashboard)
        if panel.get("type") != "row"
    }


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def exposition_names(text: str) -> set[str]:
    """Every series name in Prometheus text output: families and samples (_total, _bucket, _count...)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names
