"""The real daemon's log under systemd: priorities journald understands, retries that say
so, and each run's phases at debug level."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from automationd.errors import AdminError
from tests.support.daemon import DaemonProcess

PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}

FLAKY = """
[[jobs]]
name = "flaky"
on = "never.fired"
retries = 2
backoff = { base = "100ms", max = "200ms", jitter = 0.0 }
check = { type = "exec", argv = ["/bin/true"] }
action = { type = "exec", argv = ["/bin/sh", "-c", "test -e flag || { touch flag; exit 75; }"] }
verify = { type = "exec", argv = ["/bin/true"] }
"""


def test_journal_priorities_retries_and_debug_phases(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Start the daemon with stderr on a file that JOURNAL_STREAM names, at debug level.
    2. Trigger a job whose perform fails once with exit 75 (retryable), then succeeds.
    3. Reload a config that does not validate (an error-level event).
    Result: every line starts with the syslog priority of its level (<7> debug, <6> info,
    <4> warning, <3> error); the retry is a warning `attempt.failed` with its kind and
    `next_in`; the run's check, perform and verify phases and each attempt are logged."""
    d = daemon_factory(jobs=FLAKY, daemon='log_level = "debug"')
    d.log_path.touch()
    st = os.stat(d.log_path)
    d.start(env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    run = d.call_sync("jobs.trigger", {"name": "flaky"})
    assert d.wait_run(run["id"])["state"] == "succeeded"
    good = d.config.read_text()
    d.write_config(good + "\n[bogus]\n")
    with pytest.raises(AdminError):
        d.call_sync("reload")
    assert d.stop() == 0

    events: list[dict[str, Any]] = []
    for line in d.logs().splitlines():
        m = re.match(r"<(\d)>(\{.*\})$", line)
        assert m, f"line without a priority prefix: {line!r}"
        event = json.loads(m.group(2))
        assert int(m.group(1)) == PRIORITY[event["level"]], line
        events.append(event)
    assert {e["level"] for e in events} >= {"debug", "info", "warning", "error"}

    [failed] = [e for e in events if e["event"] == "attempt.failed"]
    assert failed["level"] == "warning"
    assert (failed["kind"], failed["phase"], failed["next_in"]) == ("retryable", "perform", 0.1)
    assert failed["run_id"] == run["id"] and failed["job"] == "flaky"

    mine = [e for e in events if e.get("run_id") == run["id"]]
    phases = [e["phase"] for e in mine if e["event"] == "run.phase"]
    assert phases == ["check", "perform", "verify"]
    attempts = [(e["phase"], e["outcome"]) for e in mine if e["event"] == "attempt.finished"]
    assert attempts == [
        ("check", "ok"), ("perform", "retryable"), ("perform", "ok"), ("verify", "ok")
    ]  # fmt: skip
    assert any(e["event"] == "config.reload_rejected" and e["level"] == "error" for e in events)
