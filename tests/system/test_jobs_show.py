"""`jobs show` against the real daemon: its next fires start at the job's next run, and the
human view is one aligned block."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path

from automationd.units import parse_rfc3339
from tests.support.daemon import DaemonProcess

JOBS = """
[[jobs]]
name = "every"
schedule = "@every 1h"
action = { type = "exec", argv = ["true"] }

[[jobs]]
name = "cron"
schedule = "0 * * * *"
action = { type = "exec", argv = ["true"] }
"""


def test_next_fires_start_at_next_run_and_the_view_is_one_block(
    daemon_factory: Callable[..., DaemonProcess], bin_dir: Path
) -> None:
    """1. A daemon with an @every job (counted from its previous fire) and a cron job.
    2. jobs.get each; then `automationctl jobs show every` as a user runs it.
    Result: the first of the 5 next fires is the job's next_run and they step by the
    schedule; the human view puts every value of its key/value block in one column."""
    d = daemon_factory(jobs=JOBS)
    d.start()
    for name, step in (("every", 3600.0), ("cron", 3600.0)):
        job = d.call_sync("jobs.get", {"name": name})
        fires = [parse_rfc3339(f["at"]) for f in job["next_fires"]]
        assert len(fires) == 5 and fires[0] == parse_rfc3339(job["next_run"]), job
        assert [b - a for a, b in itertools.pairwise(fires)] == [step] * 4

    out = subprocess.run(
        [str(bin_dir / "automationctl"), "--socket", str(d.socket), "jobs", "show", "every"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    block = out.split("\n\n", 1)[0].splitlines()
    starts = {len(line) - len(line.split(maxsplit=1)[1]) for line in block}
    assert len(block) > 8 and len(starts) == 1, out
    assert "Next fires:" in out and "Last runs:" in out
    assert d.stop() == 0
