"""One run id, one ``LiveRun`` that runs it: a run resumed again while it runs here is left
alone, a successor under the same id survives its predecessor leaving, an abandoned run
gives its place in the worker pool's line back; and thousands of waiting runs giving their
granted slots back do not nest the pool's grants."""

from __future__ import annotations

import asyncio
from pathlib import Path

from automationd.actions.base import ActionContext
from automationd.engine.live import LiveRun
from automationd.engine.recovery import resume_runs
from automationd.records import Run, Trigger
from tests.support.engine import Rig, engine_rig


class Calls:
    """An action that notes each call (``entered`` hears of it) and waits for ``release``."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.entered: asyncio.Queue[str] = asyncio.Queue()
        self.release = asyncio.Event()

    async def action(self, ctx: ActionContext) -> str:
        self.runs.append(ctx.run_id)
        self.entered.put_nowait(ctx.run_id)
        await self.release.wait()
        return "done"


async def _stored(r: Rig, run_id: str) -> Run:
    run = await r.store.run(run_id)
    assert run is not None
    return run


async def test_a_run_that_runs_here_is_not_resumed_again(tmp_path: Path) -> None:
    """A claim or recovery that hands back a run this daemon is running resumes nothing: its
    open attempt is not closed as interrupted and its action is not called a second time."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        calls = Calls()
        job = r.job("busy", calls.action)
        run_id = (await r.trigger(job))["id"]
        await calls.entered.get()
        again = await _stored(r, run_id)
        resumed = await resume_runs(
            [again], store=r.store, jobs=r.jobs, launcher=r.launcher, report=r.report, now=0.0
        )
        assert resumed == 0
        assert not r.launcher.resume(LiveRun.from_stored(again, job, []))
        calls.release.set()
        run = await r.settled(run_id)
        assert calls.runs == [run_id] and run.attempts == 1
        assert [a.outcome for a in await r.store.attempts(run_id)] == ["ok"]


async def test_a_successor_under_the_same_id_outlives_its_predecessor(tmp_path: Path) -> None:
    """1. A run is abandoned (another daemon took it) while its action runs.
    2. Before its task has unwound, the run is claimed back and resumed under the same id.
    3. The abandoned task ends and leaves memory.
    Result: the resumed run stays in the live map until it ends itself."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        calls = Calls()
        job = r.job("moved", calls.action)
        run_id = (await r.trigger(job))["id"]
        await calls.entered.get()
        old = r.launcher.live[run_id]
        successor = LiveRun.from_stored(await _stored(r, run_id), job, [])
        assert r.launcher.abandon(run_id)
        assert r.launcher.resume(successor)
        assert old.task is not None
        await asyncio.wait([old.task])
        assert r.launcher.live.get(run_id) is successor
        assert job.active.get(run_id) is successor
        await calls.entered.get()
        calls.release.set()
        await successor.ended()
        assert run_id not in r.launcher.live


async def test_an_abandoned_run_gives_back_its_place_in_the_pools_line(tmp_path: Path) -> None:
    """A run waiting for a worker (a pool reservation, no task yet) that another daemon takes
    over leaves the pool's line and memory at once; the freed worker never opens an attempt
    for it."""
    async with asyncio.timeout(10), engine_rig(tmp_path, workers=1) as r:
        calls = Calls()
        blocker = (await r.trigger(r.job("hold", calls.action)))["id"]
        waiting = (await r.trigger(r.job("wait", calls.action)))["id"]
        live = r.launcher.live[waiting]
        assert live.reservation is not None and r.pool.waiting == 1
        assert r.launcher.abandon(waiting)
        assert r.pool.waiting == 0 and live.reservation is None
        await live.ended()
        assert waiting not in r.launcher.live
        calls.release.set()
        await r.settled(blocker)
        assert calls.runs == [blocker] and r.pool.busy == 0
        assert await r.store.attempts(waiting) == []


async def test_thousands_of_waiting_runs_let_go_of_their_slots_without_recursion(
    tmp_path: Path,
) -> None:
    """1. 3,000 runs wait for the one worker (pool reservations, no tasks).
    2. The daemon drains; the busy run ends and frees the worker.
    3. Each waiting run is granted the slot, may not open its attempt, and gives it back.
    Result: all leave memory queued (to resume at next start), none opened an attempt, and
    the slot is free: the grants were handed on one after another, not nested."""
    async with asyncio.timeout(20), engine_rig(tmp_path, workers=1) as r:
        calls = Calls()
        blocker = (await r.trigger(r.job("hold", calls.action)))["id"]
        await calls.entered.get()
        job = r.job("wait", calls.action)
        lives = [r.launcher.prepare(job, trigger=Trigger.MANUAL) for _ in range(3000)]
        await r.launcher.start(lives)
        assert r.pool.waiting == 3000
        r.draining.set()
        calls.release.set()
        await r.settled(blocker)
        assert list(r.launcher.live) == [] and r.pool.busy == 0 and r.pool.waiting == 0
        assert calls.runs == [blocker]
        assert all(lv.gone and lv.first is None for lv in lives)
