"""The alerting rules are unit-tested with `promtool test rules` (etc/prometheus/rules_test.yml).

promtool comes with the Debian package ``prometheus`` (.ci/run installs it); without it the
promtool run is skipped, and the coverage check below still runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "etc" / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "etc" / "prometheus" / "rules_test.yml"
PROMTOOL = shutil.which("promtool")


def _alerts() -> set[str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    """Each alert in rules.yml is named by a promtool case that expects it to fire."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    assert doc["rule_files"] == ["rules.yml"]
    firing = {
        case["alertname"]
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = _alerts()
    assert alerts >= {"AutomationdJobNoRecentSuccess", "AutomationdJobNeverSucceeded"}
    assert alerts - firing == set()
    assert firing - alerts == set()  # no test of an alert that no longer exists


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt: prometheus)")
def test_promtool_rule_unit_tests_pass() -> None:
    """`promtool test rules` passes every case: alerts fire with the labels and annotations
    expected, and stay quiet where they must (a job that never succeeded has no dead-man
    series, so the 26 h rule does not fire for it)."""
    assert PROMTOOL is not None
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
