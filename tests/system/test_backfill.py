"""``jobs.backfill`` (issue 14): one run per past fire of a window, trigger ``backfill`` with
``scheduled_for`` set, in order, through the normal pool; idempotent by (job, fire time)
across calls and restarts, including fires the scheduler already ran."""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from automationd.errors import AdminError
from automationd.units import parse_rfc3339, rfc3339
from tests.support.daemon import BIN, DaemonProcess

Factory = Callable[..., DaemonProcess]


def job(name: str, schedule: str | None, **keys: Any) -> dict[str, Any]:
    out = {"name": name, "action": {"type": "exec", "argv": ["/bin/true"]}, **keys}
    return out | ({"schedule": schedule} if schedule else {"on": f"{name}.go"})


async def test_an_hour_of_five_minute_fires_is_twelve_runs_then_none(
    daemon_factory: Factory,
) -> None:
    """1. Backfill a past hour of `*/5 * * * *`.
    2. The same window again; a dry run of the hour before it too; restart; the window again.
    Result: 12 runs at 5-minute fire times, in order, trigger backfill, all succeeded; then
    0 new each time (12 existing); the dry run lists 12 fires and starts nothing."""
    d = daemon_factory()
    d.start()
    hour = math.floor(time.time() / 3600) * 3600 - 2 * 3600
    window = {"name": "bf", "since": rfc3339(hour), "until": rfc3339(hour + 3600)}
    async with asyncio.timeout(60):
        await d.call("jobs.add", {"job": job("bf", "*/5 * * * *")})
        first = await d.call("jobs.backfill", window)
        assert first["count"] == 12 and len(first["runs"]) == 12 and first["existing"] == 0
        runs = [await asyncio.to_thread(d.wait_run, rid) for rid in first["runs"]]
        assert {r["state"] for r in runs} == {"succeeded"}
        assert {r["trigger"] for r in runs} == {"backfill"}
        due = [parse_rfc3339(r["scheduled_for"]) for r in runs]
        assert due == [hour + 300 * i for i in range(12)]
        assert first["runs"] == sorted(first["runs"])  # created in fire order
        again = await d.call("jobs.backfill", window)
        assert (again["count"], again["runs"], again["existing"]) == (0, [], 12)
        dry = await d.call(
            "jobs.backfill", {**window, "since": rfc3339(hour - 3600), "dry_run": True}
        )
        assert (dry["count"], dry["existing"], len(dry["fires"])) == (12, 12, 12)
        assert parse_rfc3339(dry["fires"][0]) == hour - 3600
        listed = await d.call("runs.list", {"job": "bf", "trigger": "backfill", "limit": 100})
        assert len(listed) == 12
    assert d.stop() == 0
    d.start()
    async with asyncio.timeout(20):
        after = await d.call("jobs.backfill", window)
        assert (after["count"], after["existing"]) == (0, 12)
    assert d.stop() == 0


async def test_fires_the_scheduler_ran_are_not_run_again(daemon_factory: Factory) -> None:
    """An `@every 1s` job fires twice on its own; backfilling the time since it was
    added starts nothing: every fire in it already has its (scheduled) run."""
    d = daemon_factory()
    d.start()
    async with asyncio.timeout(30):
        added = await d.call("jobs.add", {"job": job("tick", "@every 1s")})
        t0 = parse_rfc3339(added["next_run"]) - 0.5  # after the grid point before it
        while (await d.call("jobs.get", {"name": "tick"}))["run_count"] < 2:  # noqa: ASYNC110 - the daemon is another process: polled
            await asyncio.sleep(0.05)
        got = await d.call(
            "jobs.backfill", {"name": "tick", "since": rfc3339(t0), "until": rfc3339(time.time())}
        )
        assert got["count"] == 0 and got["existing"] >= 2, got
    assert d.stop() == 0


async def test_bad_windows_are_refused(daemon_factory: Factory) -> None:
    """More than 10,000 fires, an empty window, and a job without a schedule are
    `bad_request`, and start nothing."""
    d = daemon_factory()
    d.start()
    now = time.time()
    async with asyncio.timeout(20):
        await d.call("jobs.add", {"job": job("sec", "* * * * * *")})
        await d.call("jobs.add", {"job": job("ev", None)})
        for args, needle in (
            ({"name": "sec", "since": rfc3339(now - 3 * 3600), "until": rfc3339(now)}, "10,000"),
            ({"name": "sec", "since": rfc3339(now), "until": rfc3339(now - 60)}, "after"),
            ({"name": "ev", "since": rfc3339(now - 60), "until": rfc3339(now)}, "no schedule"),
            ({"name": "sec", "since": "yesterday", "until": rfc3339(now)}, "since"),
        ):
            with pytest.raises(AdminError) as ei:
                await d.call("jobs.backfill", args)
            assert ei.value.code == "bad_request" and needle in ei.value.message
        assert await d.call("runs.list", {"trigger": "backfill"}) == []
    assert d.stop() == 0


async def test_automationctl_jobs_backfill(daemon_factory: Factory) -> None:
    """`automationctl jobs backfill NAME --since T --until T` says how many runs it made;
    `--dry-run` says what it would make."""
    d = daemon_factory()
    d.start()
    hour = math.floor(time.time() / 3600) * 3600 - 3600
    async with asyncio.timeout(20):
        await d.call("jobs.add", {"job": job("bf", "*/20 * * * *")})

    def ctl(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "automationctl"), "--socket", str(d.socket), "jobs", "backfill", "bf"]
        argv += ["--since", rfc3339(hour) or "", "--until", rfc3339(hour + 3600) or "", *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=20)

    dry = await asyncio.to_thread(ctl, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would create 3 run(s): ")
    done = await asyncio.to_thread(ctl)
    assert done.returncode == 0 and done.stdout == "created 3 backfill run(s)\n"
    again = await asyncio.to_thread(ctl)
    assert again.stdout == "created 0 backfill run(s) (3 fire(s) already had a run)\n"
    assert d.stop() == 0
