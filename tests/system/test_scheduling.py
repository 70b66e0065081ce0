"""Scheduling against the real daemon: timing, pause/add/remove across restarts, reload, misfire
across downtime, overlap policies, previews and scheduling metrics (SPEC §2, §3, §6)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from automationd.errors import AdminError
from automationd.units import parse_rfc3339
from tests.support.daemon import BIN, DaemonProcess, config_text

ACTS = """
import asyncio, os

async def noop(ctx):
    return None

async def slow(ctx):
    await asyncio.sleep(0.3)

async def hold(ctx):
    await asyncio.sleep(2.2)
"""

Factory = Callable[..., DaemonProcess]


def _job(name: str, schedule: str, act: str = "noop", **extra: str) -> str:
    lines = [f'name = "{name}"', f'schedule = "{schedule}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    lines.append(f'action = {{ type = "python", callable = "acts:{act}" }}')
    return "[[jobs]]\n" + "\n".join(lines) + "\n"


def _at(seconds: float) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return "@at " + t.isoformat(timespec="milliseconds")


def _make(factory: Factory, jobs: str, **kw: str) -> DaemonProcess:
    d = factory(jobs=jobs, **kw)
    (d.base / "acts.py").write_text(ACTS)
    return d


def _runs(d: DaemonProcess, job: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = d.call_sync("runs.list", {"job": job, "limit": 1000})
    return sorted(runs, key=lambda r: r["id"])


def _t(value: str) -> float:
    return parse_rfc3339(value)


def _metrics(d: DaemonProcess) -> str:
    ready = [e for e in d.log_events() if e.get("event") == "daemon.ready"][-1]  # latest start
    with urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    return text


def _sample(text: str, name: str, labels: str = "") -> float | None:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def test_every_cron_and_at_fire_on_time_with_metrics(daemon_factory: Factory) -> None:
    """1. Run `@every 1s` (0.3 s action), `*/1 * * * * *` and `@at now+2.5s` for ~5 s.
    Result: @every keeps 1 s ± 0.2 s gaps between scheduled_for and between starts without
    drifting by run time; the cron job fires each second; @at fires once and the job ends
    `completed`; lateness, jobs{state} and last-success metrics are present and sensible."""
    jobs = (
        _job("every", "@every 1s", "slow") + _job("sec", "*/1 * * * * *") + _job("once", _at(2.5))
    )
    d = _make(daemon_factory, jobs)
    d.start()
    async with asyncio.timeout(15):
        await asyncio.sleep(4.6)
    every = [r for r in _runs(d, "every") if r["state"] == "succeeded"]
    assert len(every) >= 4, every
    sched = [_t(r["scheduled_for"]) for r in every]
    starts = [_t(r["started_at"]) for r in every]
    for a, b in itertools.pairwise(sched):
        assert abs((b - a) - 1.0) <= 0.2
    for a, b in itertools.pairwise(starts):
        assert abs((b - a) - 1.0) <= 0.2
    # no drift: every start stays close to its own scheduled time, however long the runs took
    assert all(0 <= s - f < 0.2 for s, f in zip(starts, sched, strict=True))
    assert all(_t(r["finished_at"]) - _t(r["started_at"]) >= 0.29 for r in every)

    sec = [_t(r["scheduled_for"]) for r in _runs(d, "sec")]
    assert len(sec) >= 4
    assert all(s == int(s) for s in sec)
    assert [b - a for a, b in itertools.pairwise(sec)] == [1.0] * (len(sec) - 1)

    once = _runs(d, "once")
    assert [(r["trigger"], r["state"]) for r in once] == [("schedule", "succeeded")]
    job = d.call_sync("jobs.get", {"name": "once"})
    assert job["state"] == "completed" and job["next_run"] is None

    text = _metrics(d)
    count = _sample(text, "automationd_schedule_lateness_seconds_count")
    total = _sample(text, "automationd_schedule_lateness_seconds_sum")
    assert count is not None and count >= 9 and total is not None
    assert 0 <= total / count < 0.05  # mean lateness well under 50 ms
    assert _sample(text, "automationd_jobs", '{state="enabled"}') == 2
    assert _sample(text, "automationd_jobs", '{state="completed"}') == 1
    last = _sample(text, "automationd_job_last_success_timestamp_seconds", '{job="sec"}')
    assert last is not None and abs(last - time.time()) < 2.5
    assert d.stop() == 0


async def test_pause_add_remove_survive_restarts(daemon_factory: Factory) -> None:
    """1. Pause config job `tick`, add API job `added`; both fire every second.
    2. Restart: `tick` is still paused and does not fire; `added` still exists and fires.
    3. Resume `tick`: it fires again. Remove `added` and restart once more.
    Result: pause and jobs.add persist across restarts; jobs.remove persists too."""
    d = _make(daemon_factory, _job("tick", "*/1 * * * * *"))
    d.start()
    async with asyncio.timeout(20):
        paused = await d.call("jobs.pause", {"name": "tick"})
        assert paused["state"] == "paused" and paused["next_run"] is None
        spec = {
            "name": "added",
            "schedule": "*/1 * * * * *",
            "action": {"type": "python", "callable": "acts:noop"},
        }
        added = await d.call("jobs.add", {"job": spec})
        assert added["source"] == "api" and added["state"] == "enabled"
        with pytest.raises(AdminError) as ei:
            await d.call("jobs.add", {"job": spec})
        assert ei.value.code == "conflict"
        ticks = len(_runs(d, "tick"))
        assert d.stop() == 0
        d.start()
        assert (await d.call("jobs.get", {"name": "tick"}))["state"] == "paused"
        assert (await d.call("jobs.get", {"name": "added"}))["source"] == "api"
        n_added = len(_runs(d, "added"))
        await asyncio.sleep(1.6)
        assert len(_runs(d, "tick")) == ticks
        assert len(_runs(d, "added")) > n_added
        resumed = await d.call("jobs.resume", {"name": "tick"})
        assert resumed["state"] == "enabled" and resumed["next_run"] is not None
        await asyncio.sleep(1.3)
        assert len(_runs(d, "tick")) > ticks
        removed = await d.call("jobs.remove", {"name": "added"})
        assert removed["name"] == "added"
        assert d.stop() == 0
        d.start()
        with pytest.raises(AdminError) as ei:
            await d.call("jobs.get", {"name": "added"})
        assert ei.value.code == "not_found"
        assert (await d.call("jobs.get", {"name": "tick"}))["state"] == "enabled"
    assert d.stop() == 0


BAD_ADDS: list[tuple[dict[str, Any], str]] = [
    ({"name": "Bad Name"}, "name"),
    ({"schedule": "61 * * * *"}, "schedule"),
    ({"schedule": "@every 0s"}, "schedule"),
    ({"service": "nope"}, "service"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"action": {"type": "exec", "argv": "ls -l"}}, "argv"),
]


async def test_jobs_add_rejects_bad_fields_naming_them(daemon_factory: Factory) -> None:
    """Each invalid jobs.add answers bad_request whose message names the bad field, and
    nothing is added."""
    d = _make(daemon_factory, "", services='[services.api]\nrate = "10/s"\n')
    d.start()
    good = {
        "name": "ok-job",
        "schedule": "@every 1h",
        "service": "api",
        "action": {"type": "exec", "argv": ["true"]},
    }
    async with asyncio.timeout(10):
        for change, field in BAD_ADDS:
            with pytest.raises(AdminError) as ei:
                await d.call("jobs.add", {"job": {**good, **change}})
            assert ei.value.code == "bad_request", change
            assert field in str(ei.value), (change, str(ei.value))
        with pytest.raises(AdminError) as ei:
            await d.call("jobs.add", {"job": ["not", "a", "table"]})
        assert ei.value.code == "bad_request"
        assert await d.call("jobs.list") == []
        assert (await d.call("jobs.add", {"job": good}))["name"] == "ok-job"
    assert d.stop() == 0


async def test_reload_reconciles_config_jobs_and_sighup(daemon_factory: Factory) -> None:
    """1. Config jobs a, b, c; pause b; add API job x.
    2. New config: a changed, b unchanged, c removed, d added; `reload`.
    3. SIGHUP with a broken config, then SIGHUP with a good one adding e.
    Result: counts 1/1/1; b stays paused, x stays; the broken config is rejected with the old
    one in force and the daemon alive; the good one is applied."""
    a, b, c = _job("a", "@every 1h"), _job("b", "@every 1h"), _job("c", "@every 1h")
    d = _make(daemon_factory, a + b + c)
    d.start()
    async with asyncio.timeout(15):
        await d.call("jobs.pause", {"name": "b"})
        await d.call(
            "jobs.add",
            {
                "job": {
                    "name": "x",
                    "schedule": "@every 1h",
                    "action": {"type": "exec", "argv": ["true"]},
                }
            },
        )
        a2, dd = _job("a", "@every 2h"), _job("d", "@every 1h")
        d.write_config(config_text(d.base, jobs=a2 + b + dd))
        counts = await d.call("reload")
        assert counts == {"jobs_added": 1, "jobs_updated": 1, "jobs_removed": 1}
        jobs = {j["name"]: j for j in await d.call("jobs.list")}
        assert sorted(jobs) == ["a", "b", "d", "x"]
        assert jobs["a"]["schedule"] == "@every 2h"
        assert jobs["b"]["state"] == "paused" and jobs["x"]["source"] == "api"

        d.write_config(config_text(d.base, jobs=a2 + b + dd + "[[jobs]]\nname = 3\n"))
        d.send(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not any(e.get("event") == "config.reload_rejected" for e in d.log_events()):
            assert time.monotonic() < deadline, d.logs()[-2000:]
            await asyncio.sleep(0.05)
        assert sorted(j["name"] for j in await d.call("jobs.list")) == ["a", "b", "d", "x"]

        d.write_config(config_text(d.base, jobs=a2 + b + dd + _job("e", "@every 1h")))
        d.send(signal.SIGHUP)
        while "e" not in {j["name"] for j in await d.call("jobs.list")}:
            assert time.monotonic() < deadline + 5
            await asyncio.sleep(0.05)
        assert (await d.call("jobs.get", {"name": "b"}))["state"] == "paused"
    assert d.stop() == 0


async def test_misfire_run_once_skip_and_grace_across_downtime(daemon_factory: Factory) -> None:
    """1. Three `@at` jobs: run_once and skip with a 500 ms grace, run_once with 1 m; once the
    daemon is up, a reload moves their fire to 2 s ahead.
    2. Stop the daemon before the fire, wait ~1.5 s past it, restart.
    Result: run_once gets one run with trigger `misfire`; skip gets none and is counted in
    fires_missed_total; the 1 m-grace job runs normally (trigger `schedule`); all complete."""

    def jobs(at: str) -> str:
        return (
            _job("once", at, misfire='"run_once"', misfire_grace='"500ms"')
            + _job("skipper", at, misfire='"skip"', misfire_grace='"500ms"')
            + _job("graced", at, misfire='"run_once"', misfire_grace='"1m"')
        )

    d = _make(daemon_factory, jobs(_at(3600)))
    d.start()  # however long a start takes on a busy machine, the fire is not yet set
    at = _at(2.0)
    d.write_config(config_text(d.base, jobs=jobs(at)))
    assert d.call_sync("reload")["jobs_updated"] == 3
    fire = _t(at.split(" ", 1)[1])
    assert all(j["next_run"] is not None for j in d.call_sync("jobs.list"))
    assert d.stop() == 0
    assert time.time() < fire, "the daemon stopped after the fire: the scenario did not happen"
    async with asyncio.timeout(10):
        await asyncio.sleep(max(0.0, fire + 1.5 - time.time()))
    d.start()
    async with asyncio.timeout(10):
        while True:
            done = all(j["state"] == "completed" for j in await d.call("jobs.list"))
            if done and all(
                r["state"] == "succeeded" for r in _runs(d, "once") + _runs(d, "graced")
            ):
                break
            await asyncio.sleep(0.05)
    once, graced = _runs(d, "once"), _runs(d, "graced")
    assert [(r["trigger"], _t(r["scheduled_for"])) for r in once] == [("misfire", fire)]
    assert [(r["trigger"], _t(r["scheduled_for"])) for r in graced] == [("schedule", fire)]
    assert _runs(d, "skipper") == []
    text = _metrics(d)
    assert _sample(text, "automationd_fires_missed_total", '{job="skipper"}') == 1
    assert _sample(text, "automationd_fires_missed_total", '{job="once"}') in (None, 0)
    assert d.stop() == 0


async def test_overlap_skip_queue_cancel_previous(daemon_factory: Factory) -> None:
    """1. Three per-second jobs whose runs take 2.2 s: overlap skip, queue, cancel_previous.
    Result: skip records `skipped` runs with a reason while the slow run is unfinished; queue
    never has more than one run waiting; cancel_previous cancels the running one."""
    every = "*/1 * * * * *"
    jobs = (
        _job("skip", every, "hold", overlap='"skip"')
        + _job("queue", every, "hold", overlap='"queue"')
        + _job("cancel", every, "hold", overlap='"cancel_previous"')
    )
    d = _make(daemon_factory, jobs, daemon='shutdown_timeout = "100ms"')
    d.start()
    async with asyncio.timeout(15):
        end = time.monotonic() + 3.4
        while time.monotonic() < end:
            queued = [r for r in _runs(d, "queue") if r["state"] == "queued"]
            assert len(queued) <= 1, queued
            await asyncio.sleep(0.1)
    skip = _runs(d, "skip")
    assert skip[0]["state"] in ("running", "succeeded")
    skipped = [r for r in skip if r["state"] == "skipped"]
    assert len(skipped) >= 2
    assert all(r["reason"] and "overlap" in r["reason"] for r in skipped)
    assert all(r["trigger"] == "schedule" for r in skipped)
    queue = _runs(d, "queue")
    assert any(r["state"] == "skipped" for r in queue)
    assert sum(r["state"] in ("running", "queued", "succeeded") for r in queue) >= 2
    cancel = _runs(d, "cancel")
    assert sum(r["state"] == "cancelled" for r in cancel) >= 2
    assert cancel[-1]["state"] in ("queued", "running")
    assert not any(r["state"] == "succeeded" for r in cancel)
    assert d.stop() == 0


FIRE_AT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")


def test_jobs_show_and_check_config_preview_fires(daemon_factory: Factory) -> None:
    """`automationctl jobs show` prints 5 next fire times and the last runs;
    `automationd check-config` prints 3 next fire times per scheduled job."""
    berlin = _job("berlin", "30 2 * * *", timezone='"Europe/Berlin"')
    d = _make(daemon_factory, berlin + _job("hourly", "@hourly"))
    out = subprocess.run(
        [str(BIN / "automationd"), "check-config", str(d.config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(("berlin", "hourly"))}
    assert len(FIRE_AT.findall(lines["berlin"])) == 3 and "Europe/Berlin" in lines["berlin"]
    assert len(FIRE_AT.findall(lines["hourly"])) == 3
    d.start()
    show = subprocess.run(
        [str(BIN / "automationctl"), "--socket", str(d.socket), "jobs", "show", "berlin"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    fires = show.split("Next fires:", 1)[1].split("Last runs:", 1)[0]
    assert len(FIRE_AT.findall(fires)) == 5
    assert "Last runs:" in show
    assert d.stop() == 0
