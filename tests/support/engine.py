"""The engine's run-life parts wired by daemon.py's own wiring (engine/wiring.py), on a real
SQLite store: for component tests of launching, attempts, ends and the writer's retries,
without a socket."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from automationd.actions.base import ActionContext, HttpClients
from automationd.clock import SystemClock
from automationd.config.model import JobSpec, PythonAction
from automationd.engine.intake import Intake
from automationd.engine.jobs import JobRuntime, JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.pool import WorkerPool
from automationd.engine.report import Report
from automationd.engine.wiring import wire_run_life
from automationd.errors import StoreError
from automationd.obs.metrics import Metrics
from automationd.records import Run
from automationd.store.batch import Step
from automationd.store.sqlite.store import SqliteStore, open_sqlite
from automationd.store.writer import Committer


class FlakyCommitter:
    """Wraps the store's real committer; while ``failing`` every batch fails before it
    reaches SQLite, as with a full disk (``kind`` says which)."""

    def __init__(self, real: Committer, kind: str = "disk_full") -> None:
        self.real = real
        self.kind = kind
        self.failing = False
        self.failed = 0

    def start(self, steps: Sequence[Step]) -> asyncio.Future[list[Any]]:
        if not self.failing:
            return self.real.start(steps)
        self.failed += 1
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        fut.set_exception(StoreError("store: disk full (test)", kind=self.kind))
        return fut


def flaky(store: SqliteStore) -> FlakyCommitter:
    """Put a ``FlakyCommitter`` between the store's writer and its connection."""
    writer = store._writer
    wrapped = FlakyCommitter(writer._committer)
    writer._committer = wrapped
    return wrapped


class HeldCommitter:
    """Wraps the store's real committer; while ``holding``, batches wait (``arrived`` is set
    when one does) until ``release`` hands them, in order, to the real one: a commit kept in
    flight for as long as a test needs, to open the window between a change and its row."""

    def __init__(self, real: Committer) -> None:
        self.real = real
        self.holding = True
        self.held: list[tuple[Sequence[Step], asyncio.Future[list[Any]]]] = []
        self.arrived = asyncio.Event()

    def start(self, steps: Sequence[Step]) -> asyncio.Future[list[Any]]:
        if not self.holding:
            return self.real.start(steps)
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.held.append((steps, fut))
        self.arrived.set()
        return fut

    def release(self) -> None:
        self.holding = False
        for steps, fut in self.held:
            self.real.start(steps).add_done_callback(partial(_pass_on, fut))
        self.held.clear()


def _pass_on(to: asyncio.Future[list[Any]], done: asyncio.Future[list[Any]]) -> None:
    exc = done.exception()
    if exc is not None:
        to.set_exception(exc)
    else:
        to.set_result(done.result())


def hold(store: SqliteStore) -> HeldCommitter:
    """Put a ``HeldCommitter`` between the store's writer and its connection."""
    writer = store._writer
    wrapped = HeldCommitter(writer._committer)
    writer._committer = wrapped
    return wrapped


@dataclass
class Rig:
    store: SqliteStore
    jobs: JobTable
    launcher: Launcher
    report: Report
    intake: Intake
    pool: WorkerPool
    metrics: Metrics
    draining: asyncio.Event  # set: the daemon drains (runs park, none opens an attempt)

    def job(self, name: str, fn: Callable[[ActionContext], Any], **kw: Any) -> JobRuntime:
        spec = JobSpec(name=name, action=PythonAction(callable=f"t:{name}", fn=fn), **kw)
        job = JobRuntime(spec=spec, schedule=None)
        self.jobs.put(job)
        return job

    async def trigger(self, job: JobRuntime) -> dict[str, Any]:
        """A plain trigger; returns the run as answered once it is durable (as the socket)."""
        answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def reply(value: Any, exc: BaseException | None) -> None:
            if exc is not None:
                answered.set_exception(exc)
            else:
                answered.set_result(json.loads(value.text))

        self.intake.trigger_then(job, reply)
        return await answered

    async def settled(self, run_id: str) -> Run:
        """The stored run once it has left memory and its end is durable."""
        live = self.launcher.live.get(run_id)
        if live is not None:
            await live.ended()
        await self.report.settle()
        run = await self.store.run(run_id)
        assert run is not None
        return run


@asynccontextmanager
async def engine_rig(tmp: Path, workers: int = 4) -> AsyncIterator[Rig]:
    """The parts, attached to a TaskGroup of their own; on exit every end is settled."""
    clock = SystemClock()
    async with open_sqlite(tmp, clock=clock) as store, HttpClients() as http:
        metrics = Metrics()
        jobs = JobTable()
        life = wire_run_life(
            clock=clock,
            store=store,
            http=http,
            metrics=metrics,
            jobs=jobs,
            workers=workers,
            rng=random.Random(7),
        )
        launcher, report = life.launcher, life.report
        async with asyncio.TaskGroup() as tg:
            launcher.attach(tg)
            intake = Intake(launcher, store, report, jobs)
            yield Rig(store, jobs, launcher, report, intake, life.pool, metrics, life.draining)
            for task in launcher.tasks():
                task.cancel()
            await report.settle()
