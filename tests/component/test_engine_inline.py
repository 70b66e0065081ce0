"""The inline path: runs that finish inside their durability callback, and the hand-over of
those that wait or fail to a task, against a real SQLite store and the real event bus."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automationd.engine.dispatcher import Engine
from automationd.store.db import Database, open_database
from automationd.store.events import EventStore
from automationd.store.runs import RunStore

from automationd.actions.base import ActionContext, HttpClients
from automationd.clock import SystemClock
from automationd.config.model import Backoff, JobSpec, PythonAction
from automationd.engine.eventbus import EventBus
from automationd.engine.intake import Intake
from automationd.engine.jobs import JobRuntime, JobTable
from automationd.engine.pool import WorkerPool
from automationd.errors import RetryableError
from automationd.obs.metrics import Metrics
from automationd.records import Trigger

FAST = Backoff(base=0.001, max=0.001, multiplier=1.0, jitter=0.0)


@dataclass
class Rig:
    engine: Engine
    jobs: JobTable
    intake: Intake
    db: Database
    pool: WorkerPool

    def job(self, name: str, fn: Callable[[ActionContext], Any], **kw: Any) -> JobRuntime:
        spec = JobSpec(name=name, action=PythonAction(callable=f"t:{name}", fn=fn), **kw)
        job = JobRuntime(spec=spec, schedule=None)
        self.jobs.put(job)
        return job

    async def trigger(self, job: JobRuntime) -> str:
        """A plain trigger; returns the run id once it is durable (as the socket answers)."""
        answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def reply(value: Any, exc: BaseException | None) -> None:
            assert exc is None, exc
            answered.set_result(json.loads(value.text)["id"])

        self.intake.trigger_then(job, reply)
        return await answered

    async def settled(self, run_id: str) -> dict[str, Any]:
        """The stored run once it has left memory and its end is durable."""
        live = self.engine.live.get(run_id)
        if live is not None:
            await live.ended()
        await self.engine.settle()
        row = await self.db.fetchone("SELECT * FROM runs WHERE id=?", (run_id,))
        assert row is not None
        return dict(row)


@asynccontextmanager
async def rig(tmp: Path, workers: int = 4) -> AsyncIterator[Rig]:
    clock = SystemClock()
    async with open_database(tmp, clock=clock) as db, HttpClients() as http:
        metrics = Metrics()
        pool = WorkerPool(workers)
        engine = Engine(
            db=db, pool=pool, http=http, metrics=metrics, clock=clock, rng=random.Random(7)
        )
        jobs = JobTable()
        engine.outcomes = EventBus(
            engine=engine, jobs=jobs, events=EventStore(db), runs=RunStore(db), metrics=metrics
        )
        async with asyncio.TaskGroup() as tg:
            engine.attach(tg)
            yield Rig(engine, jobs, Intake(engine, RunStore(db)), db, pool)
            await engine.settle()


async def noop(ctx: ActionContext) -> None:
    return None


async def naps(ctx: ActionContext) -> int:
    await asyncio.sleep(0.01)
    return 5


async def fails_once(ctx: ActionContext) -> str:
    if ctx.attempt == 1:
        raise RetryableError("not yet")
    return "ok"


async def hangs(ctx: ActionContext) -> None:
    await asyncio.sleep(3600)


async def test_a_run_that_never_waits_ends_without_a_task(tmp_path: Path) -> None:
    """A no-op run is done by the time its trigger is answered: no task, one attempt, and its
    run.succeeded event stored with its end."""
    async with asyncio.timeout(10), rig(tmp_path) as r:
        job = r.job("quick", noop)
        tasks_before = len(asyncio.all_tasks())
        run_id = await r.trigger(job)
        assert run_id not in r.engine.live  # ended inline, in the durability callback
        assert len(asyncio.all_tasks()) == tasks_before
        row = await r.settled(run_id)
        assert (row["state"], row["attempts"], row["targets_succeeded"]) == ("succeeded", 1, 1)
        assert row["started_at"] <= row["finished_at"]
        ev = await r.db.fetchall("SELECT name, payload, depth FROM events")
        assert [(e["name"], json.loads(e["payload"]), e["depth"]) for e in ev] == [
            ("run.succeeded", {"job": "quick", "run_id": run_id, "state": "succeeded"}, 1)
        ]
        assert r.pool.busy == 0


async def test_a_run_that_waits_is_handed_to_a_task_with_its_attempt(tmp_path: Path) -> None:
    """A callable that suspends continues in a task: still one attempt, its result kept, and
    the worker slot it took is given back."""
    async with asyncio.timeout(10), rig(tmp_path) as r:
        job = r.job("napper", naps)
        run_id = await r.trigger(job)
        live = r.engine.live[run_id]
        assert live.task is not None and r.pool.busy == 1
        row = await r.settled(run_id)
        assert (row["state"], row["attempts"], json.loads(row["result"])) == ("succeeded", 1, 5)
        assert r.pool.busy == 0


async def test_a_first_attempt_that_fails_is_retried_by_the_task(tmp_path: Path) -> None:
    """A failure of the inline attempt is the task's first failure: backoff, attempt 2, done."""
    async with asyncio.timeout(10), rig(tmp_path) as r:
        job = r.job("flaky", fails_once, retries=2, backoff=FAST)
        run_id = await r.trigger(job)
        row = await r.settled(run_id)
        assert (row["state"], row["attempts"], json.loads(row["result"])) == ("succeeded", 2, "ok")
        attempts = await r.db.fetchall(
            "SELECT n, outcome FROM attempts WHERE run_id=? ORDER BY n", (run_id,)
        )
        assert [(a["n"], a["outcome"]) for a in attempts] == [(1, "retryable"), (2, "ok")]
        assert r.pool.busy == 0


async def test_a_suspended_attempt_still_times_out(tmp_path: Path) -> None:
    """The hand-over keeps the attempt's timeout: a callable that hangs ends ``timeout``."""
    async with asyncio.timeout(10), rig(tmp_path) as r:
        job = r.job("hang", hangs, retries=0, timeout=0.05)
        run_id = await r.trigger(job)
        row = await r.settled(run_id)
        assert (row["state"], row["error_kind"]) == ("failed", "timeout")
        assert r.pool.busy == 0


async def test_cancelling_a_handed_over_run_before_its_task_starts(tmp_path: Path) -> None:
    """Cancelled between the hand-over and its task's first step, the run still ends
    ``cancelled``, leaves memory and frees its worker slot."""
    async with asyncio.timeout(10), rig(tmp_path) as r:
        job = r.job("hang2", hangs)
        live, writes = r.engine.prepare_run(job, trigger=Trigger.MANUAL)
        r.engine.launch([live], writes, lambda exc: r.engine.cancel(live.run.id))
        row = await r.settled(live.run.id)
        assert row["state"] == "cancelled"
        assert r.pool.busy == 0 and not r.engine.live


async def test_no_free_worker_means_the_run_waits_in_a_task(tmp_path: Path) -> None:
    """With every worker busy the inline path steps aside; the run queues for a slot."""
    async with asyncio.timeout(10), rig(tmp_path, workers=1) as r:
        blocker = await r.trigger(r.job("hold", hangs))
        quick = await r.trigger(r.job("quick", noop))
        assert quick in r.engine.live and r.pool.waiting == 1
        r.engine.cancel(blocker)
        row = await r.settled(quick)
        assert row["state"] == "succeeded"
