"""A stalled daemon (SIGSTOP, a VM pause) applies the misfire policy as a restarted one does."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from automationd.units import parse_rfc3339
from tests.support.daemon import DaemonProcess

ACTS = "async def noop(ctx):\n    return None\n"
POLICIES = ("skip", "run_once", "run_all")
JOBS = "".join(
    f'[[jobs]]\nname = "{p.replace("_", "-")}"\nschedule = "@every 1s"\nmisfire = "{p}"\n'
    'misfire_grace = "2s"\naction = { type = "python", callable = "acts:noop" }\n'
    for p in POLICIES
)
PAUSE = 10.0


def _missed(d: DaemonProcess) -> dict[str, float]:
    ready = [e for e in d.log_events() if e.get("event") == "daemon.ready"][-1]
    with urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.findall(r'^automationd_fires_missed_total\{job="([^"]+)"\} (\S+)$', text, re.M)
    return {job: float(v) for job, v in found}


def _since(d: DaemonProcess, job: str, t0: float) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = d.call_sync("runs.list", {"job": job, "limit": 1000})
    return sorted(
        (r for r in runs if parse_rfc3339(r["scheduled_for"]) > t0), key=lambda r: r["id"]
    )


def _summary(d: DaemonProcess, t0: float) -> dict[str, dict[str, int]]:
    """Per job: catch-up runs, other runs that did work, fires dropped (since ``t0``)."""
    missed = _missed(d)
    out: dict[str, dict[str, int]] = {}
    for p in POLICIES:
        job = p.replace("_", "-")
        runs = _since(d, job, t0)
        out[p] = {
            "misfire": sum(r["trigger"] == "misfire" for r in runs),
            "scheduled": sum(r["trigger"] == "schedule" and r["state"] != "skipped" for r in runs),
            "skipped": sum(r["state"] == "skipped" for r in runs),
            "missed": int(missed.get(job, 0)),
        }
    return out


async def test_sigstop_applies_each_misfire_policy_like_a_restart(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Two daemons, each with `@every 1s` jobs for skip, run_once and run_all, grace 2 s.
    2. One is stopped with SIGSTOP for 10 s and continued; the other is stopped with SIGTERM
       for 10 s and started again (at the same time, so the test waits once).
    Result: per policy both give the same runs: skip none and ~8 fires counted as missed,
    run_once one catch-up run, run_all one catch-up run per missed fire (none counted as
    missed); neither makes a burst of `skipped` overlap records for the fires slept through.
    """
    stalled = daemon_factory(jobs=JOBS, sub="stalled")
    restarted = daemon_factory(jobs=JOBS, sub="restarted")
    for d in (stalled, restarted):
        (d.base / "acts.py").write_text(ACTS)
        d.start()
    async with asyncio.timeout(60):
        await asyncio.sleep(2.2)  # both are firing every second
        assert _missed(stalled) == {}
        t0 = time.time()
        stalled.send(signal.SIGSTOP)
        assert restarted.stop() == 0
        t_down = time.time()
        await asyncio.sleep(PAUSE - (t_down - t0))
        stalled.send(signal.SIGCONT)
        restarted.start()
        back = time.time()
        await asyncio.sleep(1.5)  # catch-up runs, then the fires inside the grace window
        a, b = _summary(stalled, t0), _summary(restarted, t0)
    down_b = back - t0  # the restarted one was down a little longer (its start-up)
    for p, got in (("stalled", a), ("restarted", b)):
        assert got["skip"]["misfire"] == 0 and 6 <= got["skip"]["missed"] <= 11, (p, got)
        assert got["run_once"]["misfire"] == 1, (p, got)
        assert 6 <= got["run_once"]["missed"] <= 10, (p, got)
        assert 6 <= got["run_all"]["misfire"] <= 11 and got["run_all"]["missed"] == 0, (p, got)
        for policy in POLICIES:
            assert got[policy]["skipped"] <= 3, (p, got)  # not one per fire slept through
            assert 1 <= got[policy]["scheduled"] <= 5, (p, got)  # grace window + after
    for policy in POLICIES:  # same runs, up to the extra second or so the restart took
        slack = 1 + round(down_b - PAUSE)
        assert abs(a[policy]["missed"] - b[policy]["missed"]) <= slack, (a, b)
        assert abs(a[policy]["misfire"] - b[policy]["misfire"]) <= slack, (a, b)
    assert stalled.stop() == 0 and restarted.stop() == 0
