"""etc/prometheus/rules.yml and etc/grafana/automationd.json use only declared metric names.

promtool (Debian package ``prometheus``) checks the PromQL when installed; without it the rules
file is at least parsed as YAML when PyYAML happens to be importable (it is not a dependency).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from automationd.obs.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "etc" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "etc" / "grafana" / "automationd.json"
PROMTOOL = shutil.which("promtool")
METRIC_NAME = re.compile(r"\b(?:automationd|process|python)_[a-zA-Z0-9_]+")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def _declared() -> set[str]:
    """Every series name the Metrics registry can expose."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
    return names


def _dashboard_exprs() -> Iterator[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    dash = json.loads(DASHBOARD.read_text())
    yield from walk(dash["panels"])
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            yield query["query"]


def test_rules_reference_only_declared_metrics() -> None:
    """Every automationd_* name in rules.yml is a series obs/metrics.py declares."""
    used = set(METRIC_NAME.findall(RULES.read_text()))
    assert used, "no metric names found"
    assert used <= _declared(), used - _declared()


def test_rules_cover_the_operational_alerts() -> None:
    """The alerts an operator needs exist: down, DLQ, breaker, lateness, failures, dead-man."""
    text = RULES.read_text()
    for alert in (
        "AutomationdDown",
        "AutomationdDeadLetterQueueGrowing",
        "AutomationdBreakerOpen",
        "AutomationdScheduleLate",
        "AutomationdRunsFailing",
        "AutomationdJobNoRecentSuccess",
    ):
        assert f"alert: {alert}\n" in text, alert


def test_rules_pass_promtool_or_parse_as_yaml(tmp_path: Path) -> None:
    """`promtool check rules` accepts the file (or, lacking promtool, it is valid YAML)."""
    if PROMTOOL is not None:
        proc = subprocess.run(
            [PROMTOOL, "check", "rules", str(RULES)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    yaml = pytest.importorskip("yaml", reason="neither promtool nor PyYAML is available")
    doc = yaml.safe_load(RULES.read_text())
    assert {g["name"] for g in doc["groups"]} == {"automationd.recording", "automationd.alerts"}


def test_dashboard_references_only_declared_metrics() -> None:
    """Every query in the Grafana dashboard uses only declared automationd_* names."""
    exprs = list(_dashboard_exprs())
    used = {name for e in exprs for name in METRIC_NAME.findall(e)}
    assert len(exprs) > 20
    assert used <= _declared(), used - _declared()


def test_dashboard_covers_every_declared_family() -> None:
    """Each metric family in obs/metrics.py appears on at least one dashboard panel (the
    standard process_/python_ collectors are ours to pick from, not to cover)."""
    used = {name for e in _dashboard_exprs() for name in METRIC_NAME.findall(e)}
    for family in Metrics().registry.collect():
        if not family.name.startswith("automationd_"):
            continue
        candidates = {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
        assert used & candidates, family.name


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt: prometheus)")
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """With Grafana's variables filled in, promtool accepts every panel query as PromQL."""
    assert PROMTOOL is not None
    fill = {"$__rate_interval": "5m", "$instance": ".*", "$job": ".*", "$service": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(e for e in _dashboard_exprs() if not e.startswith("label_values")):
        for var, value in fill.items():
            expr = expr.replace(var, value)
        lines += [f"      - record: dashboard:q{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard.yml"
    rules.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_service_variable_lists_every_service() -> None:
    """The dashboard's $service choices come from a series every [services.*] has from start
    (not only services with a breaker or a rate), and the process metrics have panels."""
    dash = json.loads(DASHBOARD.read_text())
    [var] = [v for v in dash["templating"]["list"] if v["name"] == "service"]
    assert "automationd_service_in_flight" in var["query"]["query"]
    used = {name for e in _dashboard_exprs() for name in METRIC_NAME.findall(e)}
    assert {
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    } <= used
