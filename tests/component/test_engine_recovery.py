"""Crash recovery against a real store: open attempts close ``interrupted``, a run whose last
allowed attempt was interrupted is dead-lettered, and a run whose job is gone fails like any
run (end row and ``run.failed`` event)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from automationd.actions.base import ActionContext
from automationd.core.runstate import RunState
from automationd.engine.recovery import INTERRUPTED, recover
from automationd.records import Attempt, Phase, Run, Trigger
from automationd.store.rows import w_attempt, w_run
from automationd.store.write import Write
from tests.support.engine import Rig, engine_rig

T0 = 1_780_000_000.0


async def noop(ctx: ActionContext) -> str:
    return "again"


def _crashed(run_id: str, job: str, attempts: int) -> list[Write]:
    """A run left ``running`` by a crash, its last attempt open (durable, never ended)."""
    run = Run(
        id=run_id,
        job=job,
        state=RunState.RUNNING,
        trigger=Trigger.MANUAL,
        created_at=T0,
        started_at=T0,
        attempts=attempts,
        targets_total=1,
    )
    writes = [w_run(run)]
    for n in range(1, attempts + 1):
        done = {"finished_at": T0 + n, "outcome": "interrupted"} if n < attempts else {}
        a = Attempt(
            run_id=run_id,
            n=n,
            phase=Phase.PERFORM,
            target=None,
            target_idx=-1,
            started_at=T0 + n,
            **done,  # type: ignore[arg-type]
        )
        writes.append(w_attempt(a))
    return writes


async def _recover(r: Rig) -> int:
    return await recover(
        store=r.store, jobs=r.jobs, launcher=r.launcher, report=r.report, now=T0 + 100
    )


async def test_an_interrupted_attempt_is_closed_and_the_run_resumes(tmp_path: Path) -> None:
    """A run with retries left resumes under its id: attempt 1 ``interrupted``, attempt 2
    runs and the run succeeds."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        r.job("j", noop, retries=2)
        await r.store.commit(_crashed("r1", "j", 1))
        assert await _recover(r) == 1
        run = await r.settled("r1")
        assert (run.state, run.result, run.attempts) == (RunState.SUCCEEDED, "again", 2)
        attempts = await r.store.attempts("r1")
        assert [(a.n, a.outcome, a.error) for a in attempts] == [
            (1, "interrupted", INTERRUPTED),
            (2, "ok", None),
        ]


async def test_a_crash_on_the_last_allowed_attempt_dead_letters_the_run(tmp_path: Path) -> None:
    """Three attempts with ``retries = 2``, the last one open after the crash: the run fails
    ``interrupted`` and is dead-lettered without a fourth attempt."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        r.job("j", noop, retries=2)
        await r.store.commit(_crashed("r1", "j", 3))
        await _recover(r)
        run = await r.settled("r1")
        assert run.state is RunState.FAILED
        assert run.error is not None and run.error.kind.value == "interrupted"
        assert [a.outcome for a in await r.store.attempts("r1")] == ["interrupted"] * 3
        assert [e.run_id for e in await r.store.dlq(job="j", limit=10)] == ["r1"]


async def test_a_run_whose_job_is_gone_fails_with_its_event(tmp_path: Path) -> None:
    """A stored run of a job no longer configured fails with a clear error, its open attempt
    closed, and a ``run.failed`` event stored with its end; it is not resumed."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        await r.store.commit(_crashed("r1", "gone", 1))
        assert await _recover(r) == 0
        await r.report.settle()
        run = await r.store.run("r1")
        assert run is not None and run.state is RunState.FAILED
        assert run.error is not None and run.error.message == "job 'gone' no longer exists"
        assert [a.outcome for a in await r.store.attempts("r1")] == ["interrupted"]
        events = await r.store.events(since=None, until=None, limit=None, newest_first=False)
        assert [(e.name, e.payload) for e in events] == [
            ("run.failed", {"job": "gone", "run_id": "r1", "state": "failed"})
        ]
        assert await r.store.live_runs() == []
