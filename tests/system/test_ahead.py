"""Runs made ahead of their fire (engine/ahead.py): a herd's runs are stored before they are
due, and nothing of them starts early, whatever happens in between."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from automationd.engine.ahead import HERD_MIN, LEAD
from automationd.engine.launcher import AHEAD
from tests.support.daemon import DaemonProcess

STAMP = (
    "import time\n"
    "async def stamp(ctx):\n"
    "    with open(__file__ + '.stamps', 'a') as f:\n"
    "        f.write(f'{ctx.run_id} {time.time()!r}\\n')\n"
)
WORKERS = "[workers]\nmax_concurrency = 256\n"


def _jobs(n: int, schedule: str, extra: str = "", prefix: str = "j") -> str:
    return "".join(
        f'[[jobs]]\nname = "{prefix}{i}"\nschedule = "{schedule}"\n{extra}'
        'action = { type = "python", callable = "acts:stamp" }\n'
        for i in range(n)
    )


def _at(t: float) -> str:
    return "@at " + dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")


def _runs(d: DaemonProcess) -> list[dict[str, Any]]:
    with sqlite3.connect(d.base / "state" / "automationd.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM runs WHERE trigger != 'manual'")]


def _attempts(d: DaemonProcess) -> list[dict[str, Any]]:
    with sqlite3.connect(d.base / "state" / "automationd.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM attempts")]


def _counts(d: DaemonProcess) -> dict[str, tuple[int, str | None]]:
    """Each job's stored (run_count, last_run)."""
    with sqlite3.connect(d.base / "state" / "automationd.db") as db:
        rows = db.execute("SELECT name, run_count, last_run FROM jobs WHERE name NOT LIKE '~%'")
        return {name: (n, last) for name, n, last in rows}


def _stamps(d: DaemonProcess) -> dict[str, float]:
    path = d.base / "acts.py.stamps"
    if not path.exists():
        return {}
    return {a: float(b) for a, b in (line.split() for line in path.read_text().splitlines())}


def _made(d: DaemonProcess) -> list[dict[str, Any]]:
    """Runs stored ahead of their fire and not started yet."""
    return [r for r in _runs(d) if r["state"] == "queued" and r["reason"] == AHEAD]


async def _until_made(d: DaemonProcess, n: int) -> None:
    while len(_made(d)) < n:  # noqa: ASYNC110 - another process's file: no event to wait on
        await asyncio.sleep(0.01)


def _start(d: DaemonProcess) -> None:
    (d.base / "acts.py").write_text(STAMP)
    d.start(timeout=30)


def _never_early(d: DaemonProcess) -> None:
    """No run, attempt or action of a scheduled fire began before the fire was due."""
    runs = {r["id"]: r for r in _runs(d)}
    stamps = _stamps(d)
    for r in runs.values():
        if r["started_at"] is not None:
            assert r["started_at"] >= r["scheduled_for"], r
        if r["id"] in stamps:
            assert stamps[r["id"]] >= r["scheduled_for"], (r, stamps[r["id"]])
    for a in _attempts(d):
        assert a["started_at"] >= runs[a["run_id"]]["scheduled_for"], a


async def test_a_herd_is_made_ahead_and_its_actions_start_before_its_runs_end(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """HERD_MIN per-second jobs for about 3 s: their runs are stored LEAD s before they are
    due (created before scheduled_for), none starts before it is due, every fire ran once
    and is counted on its job, and in each second every action of the herd started before
    the first of its runs ended."""
    d = daemon_factory(jobs=_jobs(HERD_MIN, "*/1 * * * * *"), extra=WORKERS)
    _start(d)
    async with asyncio.timeout(30):
        await asyncio.sleep(3.2)
    assert d.stop() == 0
    runs = [r for r in _runs(d) if r["state"] != "queued"]  # the next second's, made ahead
    seconds = sorted({r["scheduled_for"] for r in runs})
    assert len(seconds) >= 2, seconds
    ahead = [r for r in runs if r["created_at"] < r["scheduled_for"]]
    assert len(ahead) >= HERD_MIN, "no herd was made ahead"
    assert all(r["scheduled_for"] - r["created_at"] <= LEAD + 0.5 for r in ahead)
    _never_early(d)
    stamps = _stamps(d)
    for s in seconds:
        herd = [r for r in runs if r["scheduled_for"] == s]
        assert len({r["job"] for r in herd}) == len(herd) == HERD_MIN, (s, len(herd))
        assert all(r["state"] == "succeeded" for r in herd), herd
        if all(r["created_at"] < s for r in herd):
            assert max(stamps[r["id"]] for r in herd) <= min(r["finished_at"] for r in herd)
    for job, (count, last) in _counts(d).items():
        mine = sorted(r["id"] for r in runs if r["job"] == job)
        assert (count, last) == (len(mine), mine[-1]), (job, count, last, mine)


async def test_a_kill_before_the_fire_never_starts_a_made_run_early(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A herd of `@at T` jobs: once their runs are made (T - LEAD), kill -9 the daemon and
    start it again at once. Whether it is back before T or after it: no run of T started
    before T, each job ran exactly once for T (one attempt, none interrupted), and no run
    made ahead is left."""
    t_fire = time.time() + 5.0
    d = daemon_factory(jobs=_jobs(HERD_MIN, _at(t_fire)), extra=WORKERS)
    _start(d)
    async with asyncio.timeout(30):
        await _until_made(d, HERD_MIN)
        assert time.time() < t_fire
        d.kill9()
        d.start(timeout=20)
        back = time.time()
        await asyncio.sleep(max(t_fire, back) + 1.5 - time.time())
    assert d.stop() == 0
    runs = _runs(d)
    assert not _made(d), _made(d)
    assert sorted(r["job"] for r in runs) == sorted(f"j{i}" for i in range(HERD_MIN)), runs
    assert all(r["state"] == "succeeded" and r["attempts"] == 1 for r in runs), runs
    assert all(a["outcome"] == "ok" for a in _attempts(d))
    assert {n for n, _ in _counts(d).values()} == {1}, _counts(d)
    _never_early(d)


async def test_a_job_paused_or_removed_before_its_fire_loses_its_made_run(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A herd of `@at T` jobs plus one more: once their runs are made, one job is paused and
    the extra one removed from the file (reload). At T neither fires: their made runs are
    deleted, and the log says so; the others run once each, not before T."""
    t_fire = time.time() + 4.0
    jobs = _jobs(HERD_MIN, _at(t_fire)) + _jobs(1, _at(t_fire), prefix="gone")
    d = daemon_factory(jobs=jobs, extra=WORKERS)
    _start(d)
    async with asyncio.timeout(30):
        await _until_made(d, HERD_MIN + 1)
        d.call_sync("jobs.pause", {"name": "j0"})
        d.write_config(d.config.read_text().replace('name = "gone0"', 'name = "later"', 1))
        d.call_sync("reload")
        assert time.time() < t_fire, "the pause came after the fire"
        await asyncio.sleep(max(0.0, t_fire + 1.5 - time.time()))
    dropped = {e["job"] for e in d.log_events() if e.get("event") == "schedule.ahead_dropped"}
    assert d.stop() == 0
    runs = {r["job"]: r for r in _runs(d)}
    assert "j0" not in runs and "gone0" not in runs, runs
    assert {"j0", "gone0"} <= dropped, dropped
    assert all(runs[f"j{i}"]["state"] == "succeeded" for i in range(1, HERD_MIN)), runs
    _never_early(d)


async def test_a_stall_across_the_fire_applies_the_misfire_policy_to_made_runs(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A herd of `@at T` jobs with misfire = skip and a 1 s grace: once their runs are made,
    the daemon is stopped (SIGSTOP) until 2.5 s after T. The fires are missed (dropped by the
    policy, as after a restart): no run for T is left, made or started."""
    t_fire = time.time() + 4.0
    extra = 'misfire = "skip"\nmisfire_grace = "1s"\n'
    d = daemon_factory(jobs=_jobs(HERD_MIN, _at(t_fire), extra), extra=WORKERS)
    _start(d)
    async with asyncio.timeout(30):
        await _until_made(d, HERD_MIN)
        d.send(signal.SIGSTOP)
        await asyncio.sleep(max(0.0, t_fire + 2.5 - time.time()))
        d.send(signal.SIGCONT)
        await asyncio.sleep(1.5)
    events = [e.get("event") for e in d.log_events()]
    assert d.stop() == 0
    assert "schedule.stalled" in events
    assert _runs(d) == [], _runs(d)
    assert _stamps(d) == {}
