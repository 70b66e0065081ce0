"""The dead-man's-switch gauge survives a restart and never invents a success (SPEC §6)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable

from automationd.units import parse_rfc3339
from tests.support.daemon import DaemonProcess

GAUGE = "automationd_job_last_success_timestamp_seconds"
JOBS = """
[[jobs]]
name = "good"
on = "never.*"
action = { type = "exec", argv = ["true"] }

[[jobs]]
name = "bad"
on = "never.*"
retries = 0
action = { type = "exec", argv = ["false"] }

[[jobs]]
name = "idle"
schedule = "@yearly"
action = { type = "exec", argv = ["true"] }
"""


def _gauge(d: DaemonProcess) -> dict[str, float]:
    ready = [e for e in d.log_events() if e.get("event") == "daemon.ready"][-1]
    with urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.findall(rf'^{GAUGE}{{job="([^"]+)"}} (\S+)$', text, re.M)
    return {job: float(v) for job, v in found}


def test_gauge_is_filled_from_the_store_at_start_and_absent_without_a_success(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Three jobs: `good` succeeds once, `bad` fails once, `idle` never runs.
    2. Scrape, restart the daemon, scrape again (before anything runs).
    Result: both scrapes have a series for `good` only, holding the time its run finished;
    `bad` and `idle` have no series at all (not a 0)."""
    d = daemon_factory(jobs=JOBS)
    d.start()
    assert _gauge(d) == {}
    good = d.wait_run(d.call_sync("jobs.trigger", {"name": "good"})["id"])
    bad = d.wait_run(d.call_sync("jobs.trigger", {"name": "bad"})["id"])
    assert (good["state"], bad["state"]) == ("succeeded", "failed")
    finished = parse_rfc3339(good["finished_at"])
    before = _gauge(d)
    assert set(before) == {"good"} and abs(before["good"] - finished) < 0.01
    assert d.stop() == 0

    d.start()
    after = _gauge(d)
    assert set(after) == {"good"}, after
    assert abs(after["good"] - before["good"]) < 0.001
    assert d.stop() == 0
