"""A run's life: persist → check → perform per target → verify → retry/DLQ → end → run.* event.

Theory of operation:
- A run row (and its target rows, for fan-outs) is submitted to the group-commit writer when
  the run is created; the run starts from that write's settlement, once durable (never
  before), and whoever created the run (trigger, event, fire) is told by the same settlement.
- A lean run whose action finishes without waiting runs to its end right there, without a
  task (engine/inline.py); every other run gets a task that runs engine/execution.py.
- Intermediate state changes (running, attempt started/ended, target ended, retrying) are
  posted without a future: the writer keeps each row's full-row upserts in order, so a crash
  loses at most the latest few, and recovery reads a lost "ended" as ``interrupted``.
- The end state (with its run.* event) is durable before it is reported (engine/ending.py).
- A run without explicit targets has one implicit target (``None``) whose state lives on the
  run row only, so the common single-action run writes no target rows at all.
- Draining (shutdown) stops new attempts: runs park where they are and resume at next start.
- A bug inside a run fails that run, never the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import structlog

from automationd.actions.base import HttpClients
from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.core.runstate import (
    RunEvent,
    RunState,
)
from automationd.engine.attempts import Drained
from automationd.engine.ending import Ends, Outcomes, finish
from automationd.engine.execution import execute
from automationd.engine.inline import run_inline
from automationd.engine.jobs import JobRuntime
from automationd.engine.liverun import JobRows, LiveRun, job_row
from automationd.engine.pool import PoolClosed, WorkerPool
from automationd.errors import ErrorKind
from automationd.obs.metrics import JobMetrics, Metrics
from automationd.records import Run, RunError, Target, Trigger
from automationd.store.db import Database, Write
from automationd.store.jobs import w_job
from automationd.store.runs import w_run, w_target
from automationd.store.writer import Then

log = structlog.get_logger("automationd.engine")

__all__ = ["Drained", "Engine", "LiveRun", "job_row"]


class Engine:
    def __init__(
        self,
        *,
        db: Database,
        pool: WorkerPool,
        http: HttpClients,
        metrics: Metrics,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.db = db
        self.pool = pool
        self.http = http
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self.ids = IdGenerator(rng)
        self.live: dict[str, LiveRun] = {}
        self.dlq_size = 0
        self.draining = asyncio.Event()
        self.outcomes: Outcomes | None = None  # the event bus publishes ended runs
        self._tg: asyncio.TaskGroup | None = None
        self._rows = JobRows(self.post)
        # Job counters changed: the job's row goes out with the next batch (see JobRows).
        self.touch: Callable[[JobRuntime], None] = self._rows.touch
        self.ends = Ends(self)
        # Whether "run.finished" lines are wanted: asked once (the level is fixed for the
        # process), because even a filtered-out call costs more than a run's metrics.
        self.log_runs = log.is_enabled_for(logging.INFO)

    # ----------------------------------------------------------------- plumbing
    def attach(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg

    def write(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        """Submit writes; the returned future resolves once they are durable."""
        fut = self.db.submit(writes)
        fut.add_done_callback(_log_write_failure)
        return fut

    def post(self, writes: Sequence[Write]) -> None:
        """Submit writes nobody waits for (ordered with everything else, just no future)."""
        self.db.post(writes)

    def new_id(self) -> str:
        return self.ids.new(self.clock.time())

    def queue_depth(self) -> int:
        return self.pool.waiting

    def meters(self, job: JobRuntime) -> JobMetrics:
        if job.meters is None:
            job.meters = JobMetrics(self.metrics, job.name)
        meters: JobMetrics = job.meters
        return meters

    # ----------------------------------------------------------------- creating runs
    def create_run(self, job: JobRuntime, **kw: Any) -> tuple[Run, asyncio.Future[None]]:
        """Build a queued run and submit it; it starts once durable (the future says when)."""
        live, writes = self.prepare_run(job, **kw)
        return live.run, self.launched([live], writes)

    def prepare_run(
        self,
        job: JobRuntime,
        *,
        trigger: Trigger,
        payload: Any = None,
        idempotency_key: str | None = None,
        scheduled_for: float | None = None,
        targets: Sequence[Any] | None = None,
        depth: int = 0,
        origin: str | None = None,
        skip_check: bool = False,
        after: tuple[asyncio.Future[None], ...] = (),
    ) -> tuple[LiveRun, list[Write]]:
        """A queued run and the writes that make it durable; nothing is submitted yet."""
        now = self.clock.time()
        run_id = self.ids.new(now)
        spec = job.spec
        explicit = targets if targets is not None else spec.targets
        tobjs: list[Target] | None
        if spec.check is not None and not skip_check:
            tobjs = []  # the check phase decides the targets
        elif explicit is None:
            tobjs = None  # the one implicit target (see LiveRun.targets)
        else:
            tobjs = [Target(run_id=run_id, idx=i, target=t) for i, t in enumerate(explicit)]
        run = Run(
            id=run_id,
            job=job.name,
            state=RunState.QUEUED,
            trigger=trigger,
            created_at=now,
            scheduled_for=scheduled_for,
            idempotency_key=idempotency_key,
            payload=payload,
            targets_total=1 if tobjs is None else len(tobjs),
            depth=depth,
            origin=origin,
        )
        job.run_count += 1
        job.last_run = run_id
        persist = explicit is not None
        writes = [w_run(run)]
        if job.spec.max_runs:  # the count decides completion: keep it in the same unit
            writes.append(w_job(job_row(job)))
        else:
            self.touch(job)
        if persist and tobjs:
            writes.extend(w_target(t) for t in tobjs)
        live = LiveRun(
            run=run,
            job=job,
            target_list=tobjs,
            persist_targets=persist,
            skip_check=skip_check,
            after=after,
            lean=job.lean,
        )
        return live, writes

    def launch(
        self, lives: Sequence[LiveRun], writes: Sequence[Write], then: Then | None = None
    ) -> None:
        """Submit ``writes`` as one unit; once durable, start each run, then call ``then``.

        Starting from the batch's settlement (rather than a task awaiting a future) costs no
        future, no task switch, and a run whose write failed never starts at all.
        """
        for live in lives:
            self.track(live)
        self.db.submit_then(writes, partial(self._stored, lives, then))

    def launched(self, lives: Sequence[LiveRun], writes: Sequence[Write]) -> asyncio.Future[None]:
        """``launch`` for callers that await durability."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_log_write_failure)
        self.launch(lives, writes, partial(_resolve, fut))
        return fut

    def record_skipped(
        self, job: JobRuntime, *, trigger: Trigger, scheduled_for: float | None, reason: str
    ) -> Run:
        """A fire that the overlap policy skipped still leaves a trace: a ``skipped`` run."""
        now = self.clock.time()
        run = Run(
            id=self.ids.new(now),
            job=job.name,
            state=RunState.SKIPPED,
            trigger=trigger,
            created_at=now,
            scheduled_for=scheduled_for,
            finished_at=now,
            reason=reason,
        )
        job.last_run = run.id
        self.post([w_run(run)])
        self.touch(job)
        self.meters(job).run_ended("skipped", None, now)
        return run

    def resume(self, live: LiveRun) -> None:
        live.resumed = True
        self.track(live)
        self.spawn(live)

    def track(self, live: LiveRun) -> None:
        """Count a run as live from now on (``launch`` does it too; this is for callers that
        launch a little later, in a group)."""
        self.live[live.run.id] = live
        live.job.active[live.run.id] = live

    def _stored(
        self, lives: Sequence[LiveRun], then: Then | None, exc: BaseException | None
    ) -> None:
        if exc is not None:
            for live in lives:
                self.forget(live)  # never stored: the caller is told; nothing to run
                log.error("run.not_stored", run_id=live.run.id, job=live.job.name)
        elif self.draining.is_set():
            for live in lives:
                self.forget(live)  # durable and queued: it resumes at next start
        else:
            for live in lives:
                if not run_inline(self, live):
                    self.spawn(live)
        if then is not None:
            then(exc)

    def spawn(self, live: LiveRun) -> None:
        """Give the run a task (engine/inline.py hands over a run that has to wait)."""
        assert self._tg is not None, "engine not attached to a TaskGroup"
        live.task = self._tg.create_task(self._run_task(live), name=f"run:{live.run.id}")
        if live.begun is not None:
            live.task.add_done_callback(lambda _: self._drop_begun(live))

    def _drop_begun(self, live: LiveRun) -> None:
        """A handed-over attempt its task never resumed (cancelled first): free its slot."""
        if live.begun is not None:
            live.begun = None
            self.pool.release()

    def forget(self, live: LiveRun) -> None:
        """The run leaves memory (its end is submitted, or it parks until next start)."""
        self.live.pop(live.run.id, None)
        live.job.active.pop(live.run.id, None)
        live.gone = True
        if live.done is not None and not live.done.done():
            live.done.set_result(None)

    async def settle(self) -> None:
        """Wait until everything submitted so far is durable and reported (shutdown).

        Twice: the groups a turn collects (ends, triggers) are submitted at the turn's end,
        possibly after the first round's write; and reports may start runs of their own.
        """
        for _ in range(2):
            await self.write([])

    # ----------------------------------------------------------------- a run's task
    async def _run_task(self, live: LiveRun) -> None:
        run_id = live.run.id
        live.started = True
        try:
            for prev in live.after:
                if not prev.done():
                    await asyncio.wait([prev])
            if live.cancel_reason is not None:
                raise asyncio.CancelledError
            await execute(self, live)
        except (Drained, PoolClosed):
            log.info("run.parked", run_id=run_id, job=live.job.name)
        except asyncio.CancelledError:
            if live.cancel_reason is None:
                raise  # shutdown: leave the run live; it resumes at next start
            await finish(self, live, RunEvent.CANCEL, reason=live.cancel_reason)
        except Exception as exc:  # a bug must not take the daemon down: fail this run only
            log.exception("run.internal_error", run_id=run_id, job=live.job.name)
            if not live.run.state.terminal:
                err = RunError(kind=ErrorKind.FATAL, message=f"internal error: {exc!r}")
                try:
                    await finish(self, live, RunEvent.FAIL, error=err)
                except Exception:
                    log.exception("run.finish_failed", run_id=run_id)
        finally:
            self.forget(live)

    # ----------------------------------------------------------------- control
    def cancel(self, run_id: str, reason: str = "cancelled by request") -> LiveRun | None:
        """Ask a live run to end ``cancelled`` (one not yet started ends so when it starts)."""
        live = self.live.get(run_id)
        if live is None:
            return None
        live.cancel_reason = reason
        # A task that has not taken its first step is left alone: it sees the reason when it
        # starts and ends the run ``cancelled``. Cancelled before that step, its body would
        # never run at all, and the run would neither end nor leave memory.
        if live.task is not None and live.started:
            live.task.cancel()
        return live


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def _log_write_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and (exc := fut.exception()) is not None:
        log.error("store.write_failed", error=str(exc))
