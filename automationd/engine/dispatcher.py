"""A run's life: persist → check → perform per target → verify → retry/DLQ → end → run.* hook.

Theory of operation:
- A run row (and its known target rows) is submitted to the group-commit writer when the run
  is created; the run's task awaits that durability before any of its work starts, and the
  caller that creates it (trigger, event, fire) awaits the same future before answering.
- Intermediate state changes (running, attempt started/finished, target ended, retrying) are
  submitted without awaiting: the writer keeps them in order per row (full-row upserts), so a
  crash loses at most the latest few, and recovery treats a lost "finished" as interrupted.
- The end state is awaited before it is reported (log, metrics, run.* events, socket reads).
- Waiting order for an attempt: service gate (token, slot, pause, breaker) first, then a global
  worker slot, so an attempt held up by a slow partner API never sits on a worker.
- Draining (shutdown) stops new attempts: runs park where they are and resume at next start.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from automationd.actions.base import ActionContext, ActionResult, HttpClients, build_action
from automationd.clock import Clock
from automationd.config.model import Backoff
from automationd.core.backoff import retry_delay
from automationd.core.ids import IdGenerator
from automationd.core.runstate import (
    RunEvent,
    RunState,
    TargetEvent,
    TargetState,
    aggregate,
    next_run_state,
    next_target_state,
)
from automationd.engine.jobs import JobRuntime
from automationd.engine.pool import PoolClosed, WorkerPool
from automationd.errors import ActionError, ErrorKind
from automationd.obs.metrics import Metrics
from automationd.records import Attempt, DlqEntry, Phase, Run, RunError, Target, Trigger
from automationd.store.db import Database, Write
from automationd.store.jobs import JobRow, w_job
from automationd.store.runs import w_attempt, w_attempt_pgid, w_dlq, w_run, w_target

log = structlog.get_logger("automationd.engine")

_PHASE_SLOT = {Phase.PERFORM: 0, Phase.CHECK: 1, Phase.VERIFY: 2}
_DEFAULT_RL = Backoff(base=16.0, max=64.0, multiplier=2.0, jitter=0.2)


class Drained(Exception):
    """The daemon is draining: this run parks and resumes at next start."""


@dataclass(slots=True, eq=False)
class LiveRun:
    run: Run
    job: JobRuntime
    targets: list[Target]
    skip_check: bool = False
    after: tuple[asyncio.Task[None], ...] = ()
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    executing: int = 0
    resumed: bool = False
    log: Any = field(default=None)


def job_row(job: JobRuntime) -> JobRow:
    return JobRow(
        name=job.name,
        source=job.spec.source,
        spec=dict(job.spec.raw) if job.spec.source == "api" else None,
        paused=job.paused,
        completed=job.completed,
        last_scheduled=job.last_scheduled,
        run_count=job.run_count,
        last_run=job.last_run,
        last_success=job.last_success,
    )


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
        services: Any,
    ) -> None:
        self.db = db
        self.pool = pool
        self.http = http
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self.services = services
        self.ids = IdGenerator(rng)
        self.live: dict[str, LiveRun] = {}
        self.dlq_size = 0
        self.draining = asyncio.Event()
        self.on_run_end: Callable[[Run], Awaitable[None]] | None = None
        self._tg: asyncio.TaskGroup | None = None

    # ----------------------------------------------------------------- plumbing
    def attach(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg

    def write(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        fut = self.db.submit(writes)
        fut.add_done_callback(_log_write_failure)
        return fut

    def new_id(self) -> str:
        return self.ids.new(self.clock.time())

    def queue_depth(self) -> int:
        return self.pool.waiting

    # ----------------------------------------------------------------- creating runs
    def create_run(self, job: JobRuntime, **kw: Any) -> tuple[Run, asyncio.Future[None]]:
        """Build a queued run, submit it durably and start its task (which waits for the write).

        Returns the run and the durability future; callers that report the run await it.
        """
        live, writes = self.prepare_run(job, **kw)
        return live.run, self.launch([live], writes)

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
        after: tuple[asyncio.Task[None], ...] = (),
    ) -> tuple[LiveRun, list[Write]]:
        """A queued run and the writes that make it durable; nothing is submitted yet."""
        now = self.clock.time()
        run_id = self.ids.new(now)
        spec = job.spec
        if spec.check is None or skip_check:
            tlist = list(targets) if targets is not None else list(spec.targets or [None])
        else:
            tlist = []  # the check phase decides the targets
        run = Run(
            id=run_id,
            job=job.name,
            state=RunState.QUEUED,
            trigger=trigger,
            created_at=now,
            scheduled_for=scheduled_for,
            idempotency_key=idempotency_key,
            payload=payload,
            targets_total=len(tlist),
            depth=depth,
            origin=origin,
        )
        tobjs = [Target(run_id=run_id, idx=i, target=t) for i, t in enumerate(tlist)]
        job.run_count += 1
        job.last_run = run_id
        writes = [w_run(run), *(w_target(t) for t in tobjs), w_job(job_row(job))]
        live = LiveRun(run=run, job=job, targets=tobjs, skip_check=skip_check, after=after)
        return live, writes

    def launch(self, lives: Sequence[LiveRun], writes: Sequence[Write]) -> asyncio.Future[None]:
        """Submit ``writes`` as one unit and start each run once they are durable."""
        fut = self.write(writes)
        for live in lives:
            self._start(live, fut)
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
        self.write([w_run(run), w_job(job_row(job))])
        self.metrics.runs_total.labels(self.metrics.job(job.name), "skipped").inc()
        return run

    def resume(self, live: LiveRun) -> None:
        live.resumed = True
        self._start(live, None)

    def _start(self, live: LiveRun, durable: asyncio.Future[None] | None) -> None:
        assert self._tg is not None, "engine not attached to a TaskGroup"
        self.live[live.run.id] = live
        live.job.active[live.run.id] = live
        live.task = self._tg.create_task(self._run_task(live, durable), name=f"run:{live.run.id}")

    # ----------------------------------------------------------------- a run's task
    async def _run_task(self, live: LiveRun, durable: asyncio.Future[None] | None) -> None:
        run_id = live.run.id
        try:
            if durable is not None:
                await asyncio.shield(durable)
            for prev in live.after:
                if not prev.done():
                    await asyncio.wait([prev])
            await self._execute(live)
        except (Drained, PoolClosed):
            log.info("run.parked", run_id=run_id, job=live.job.name)
        except asyncio.CancelledError:
            if live.cancel_reason is None:
                raise  # shutdown: leave the run live; it resumes at next start
            await self.finish(live, RunEvent.CANCEL, reason=live.cancel_reason)
        except Exception as exc:  # a bug must not take the daemon down: fail this run only
            log.exception("run.internal_error", run_id=run_id, job=live.job.name)
            err = RunError(kind=ErrorKind.FATAL, message=f"internal error: {exc!r}")
            try:
                await self.finish(live, RunEvent.FAIL, error=err)
            except Exception:
                log.exception("run.finish_failed", run_id=run_id)
        finally:
            self.live.pop(run_id, None)
            live.job.active.pop(run_id, None)

    async def _execute(self, live: LiveRun) -> None:
        if self.draining.is_set():
            raise Drained
        run = live.run
        if run.state is RunState.QUEUED or live.resumed:
            event = RunEvent.START if run.state is RunState.QUEUED else RunEvent.RESUME
            live.run = run = replace(
                run,
                state=next_run_state(run.state, event),
                started_at=run.started_at or self.clock.time(),
            )
            self.write([w_run(run)])
        spec = live.job.spec
        if spec.check is not None and not live.skip_check and run.targets_total == 0:
            res = await self._phase_with_retries(live, Phase.CHECK, None)
            if isinstance(res, RunError):
                await self.finish(live, RunEvent.FAIL, error=res)
                return
            if not res.perform:
                await self.finish(live, RunEvent.SKIP, reason="check: nothing to perform")
                return
            self._apply_check(live, res)
        pending = [t for t in live.targets if t.state is TargetState.PENDING]
        if len(pending) == 1:
            await self._do_target(live, pending[0])
        elif pending:
            parked: list[bool] = []
            async with asyncio.TaskGroup() as tg:
                for t in pending:
                    tg.create_task(self._target_task(live, t, parked),
                                   name=f"target:{run.id}:{t.idx}")
            if parked:
                raise Drained
        ok = sum(1 for t in live.targets if t.state is TargetState.SUCCEEDED)
        failed = sum(1 for t in live.targets if t.state is TargetState.FAILED)
        event = aggregate(ok, failed, len(live.targets))
        err = None
        if event is not RunEvent.SUCCEED:
            first = next(t.error for t in live.targets if t.state is TargetState.FAILED)
            err = first
        result = live.targets[0].result if len(live.targets) == 1 else None
        await self.finish(live, event, error=err, result=result)

    def _apply_check(self, live: LiveRun, res: ActionResult) -> None:
        run = live.run
        payload = res.payload if res.payload is not None else run.payload
        tlist = list(res.targets) if res.targets is not None else list(
            live.job.spec.targets or [None]
        )
        live.targets = [Target(run_id=run.id, idx=i, target=t) for i, t in enumerate(tlist)]
        live.run = replace(run, payload=payload, targets_total=len(tlist), result=res.value)
        self.write([w_run(live.run), *(w_target(t) for t in live.targets)])

    async def _target_task(self, live: LiveRun, target: Target, parked: list[bool]) -> None:
        try:
            await self._do_target(live, target)
        except (Drained, PoolClosed):
            parked.append(True)

    async def _do_target(self, live: LiveRun, target: Target) -> None:
        res = await self._phase_with_retries(live, Phase.PERFORM, target)
        spec = live.job.spec
        if not isinstance(res, RunError) and spec.verify is not None:
            target = self._target(live, target.idx)
            vres = await self._phase_with_retries(live, Phase.VERIFY, target)
            if not isinstance(vres, RunError) and _mismatch(vres):
                res = RunError(kind=ErrorKind.FATAL, message="verify reported a mismatch")
            elif isinstance(vres, RunError):
                res = vres
        target = self._target(live, target.idx)
        if isinstance(res, RunError):
            self.fail_target(live, target, res)
        else:
            target = replace(
                target,
                state=next_target_state(target.state, TargetEvent.SUCCEED),
                result=res.value,
            )
            live.targets[target.idx] = target
            self.write([w_target(target)])

    def fail_target(self, live: LiveRun, target: Target, err: RunError) -> None:
        """A target that exhausted its retries or failed fatally: mark it, dead-letter it."""
        now = self.clock.time()
        target = replace(target, state=next_target_state(target.state, TargetEvent.FAIL), error=err)
        entry = DlqEntry(
            id=self.ids.new(now),
            run_id=live.run.id,
            job=live.job.name,
            target=target.target,
            target_idx=target.idx,
            error=err,
            failed_at=now,
        )
        self.dlq_size += 1
        self.metrics.dlq_size.set(self.dlq_size)
        live.targets[target.idx] = target
        self.write([w_target(target), w_dlq(entry)])
        log.warning(
            "target.dead_lettered",
            run_id=live.run.id,
            job=live.job.name,
            target=target.target,
            kind=err.kind.value,
            error=err.message,
        )

    def _target(self, live: LiveRun, idx: int) -> Target:
        return live.targets[idx]

    async def _phase_with_retries(
        self, live: LiveRun, phase: Phase, target: Target | None
    ) -> ActionResult | RunError:
        """Attempts of one phase for one target until success, a fatal error or no retries."""
        spec = live.job.spec
        tries = target.attempts if target is not None else 0
        while True:
            if self.draining.is_set():
                raise Drained
            try:
                return await self._attempt(live, phase, target, is_retry=tries > 0)
            except ActionError as exc:
                tries += 1
                err = RunError(kind=exc.kind, message=exc.message)
                if target is not None:
                    target = self._target(live, target.idx)
                    tries = target.attempts
                if not exc.kind.retryable or tries > spec.retries:
                    return err
                gate = live.job.gate
                rl = gate.config.rate_limited_backoff if gate is not None else _DEFAULT_RL
                cap = gate.config.max_retry_after if gate is not None else 3600.0
                delay = retry_delay(
                    exc.kind, tries, spec.backoff, rl, exc.retry_after, cap, self.rng
                )
                await self._backoff(live, delay)

    async def _backoff(self, live: LiveRun, delay: float) -> None:
        if live.executing == 0 and live.run.state is RunState.RUNNING:
            live.run = replace(
                live.run, state=next_run_state(live.run.state, RunEvent.BACKOFF)
            )
            self.write([w_run(live.run)])
        try:
            async with asyncio.timeout(delay):
                await self.draining.wait()
        except TimeoutError:
            return
        raise Drained

    async def _attempt(
        self, live: LiveRun, phase: Phase, target: Target | None, *, is_retry: bool
    ) -> ActionResult:
        job = live.job
        gate = job.gate
        if gate is not None:
            async with gate.slot(is_retry=is_retry):
                async with self.pool.slot(job.spec.priority):
                    return await self._call(live, phase, target)
        async with self.pool.slot(job.spec.priority):
            return await self._call(live, phase, target)

    async def _call(self, live: LiveRun, phase: Phase, target: Target | None) -> ActionResult:
        if self.draining.is_set():
            raise Drained
        job = live.job
        spec = job.spec
        if job.actions is None:
            job.actions = (
                build_action(spec.action, http=self.http),
                build_action(spec.check, http=self.http) if spec.check else None,
                build_action(spec.verify, http=self.http) if spec.verify else None,
            )
        action = job.actions[_PHASE_SLOT[phase]]
        assert action is not None, f"job {job.name} has no {phase} action"
        now = self.clock.time()
        run = live.run
        if run.state is RunState.RETRYING:
            run = replace(run, state=next_run_state(run.state, RunEvent.RESUME))
        n = run.attempts + 1
        live.run = run = replace(run, attempts=n)
        tidx = target.idx if target is not None else -1
        tval = target.target if target is not None else None
        writes = [w_run(run)]
        if target is not None and phase is Phase.PERFORM:
            cur = self._target(live, tidx)
            target = replace(cur, attempts=cur.attempts + 1)
            live.targets[tidx] = target
            writes.append(w_target(target))
        attempt = Attempt(
            run_id=run.id, n=n, phase=phase, target=tval, target_idx=tidx, started_at=now
        )
        writes.append(w_attempt(attempt))
        self.write(writes)
        ctx = ActionContext(
            job=job.name,
            run_id=run.id,
            attempt=n,
            phase=phase,
            target=tval,
            payload=run.payload,
            log=log.bind(job=job.name, run_id=run.id, attempt=n, phase=phase.value),
            service=spec.service,
            timeout=_timeout(spec, phase),
            idempotency_key=f"{run.id}/{max(tidx, 0)}",
            on_spawn=lambda pgid: self.write([w_attempt_pgid(run.id, n, pgid)]) and None,
            on_http_response=job.gate.observe_http if job.gate is not None else None,
        )
        live.executing += 1
        self.metrics.workers_busy.set(self.pool.busy)
        result: ActionResult | None = None
        error: ActionError | None = None
        try:
            result = await action(ctx)
        except ActionError as exc:
            error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an action bug is a retryable failure, never a crash
            error = ActionError(f"{type(exc).__name__}: {exc}", kind=ErrorKind.RETRYABLE)
        finally:
            live.executing -= 1
        end = self.clock.time()
        outcome = "ok" if error is None else error.kind.value
        output = result.output if result is not None else getattr(error, "output", ())
        streams = dict(output)
        self.write(
            [
                w_attempt(
                    replace(
                        attempt,
                        finished_at=end,
                        outcome=outcome,
                        error=error.message if error else None,
                    ),
                    stdout=streams.get("stdout"),
                    stderr=streams.get("stderr"),
                )
            ]
        )
        self.metrics.attempts_total.labels(self.metrics.job(job.name), outcome).inc()
        if job.gate is not None:
            job.gate.report(
                ok=error is None,
                kind=error.kind if error else None,
                retry_after=error.retry_after if error else None,
            )
        if error is not None:
            raise error
        assert result is not None
        return result

    # ----------------------------------------------------------------- ending
    async def finish(
        self,
        live: LiveRun,
        event: RunEvent,
        *,
        error: RunError | None = None,
        reason: str | None = None,
        result: Any = None,
    ) -> Run:
        run = live.run
        now = self.clock.time()
        ok = sum(1 for t in live.targets if t.state is TargetState.SUCCEEDED)
        failed = sum(1 for t in live.targets if t.state is TargetState.FAILED)
        run = replace(
            run,
            state=next_run_state(run.state, event),
            finished_at=now,
            targets_succeeded=ok,
            targets_failed=failed,
            error=error,
            reason=reason,
            result=result if result is not None else run.result,
        )
        live.run = run
        job = live.job
        if run.state is RunState.SUCCEEDED:
            job.last_success = now
            self.metrics.job_last_success_timestamp_seconds.labels(
                self.metrics.job(job.name)
            ).set(now)
        await self.write([w_run(run), w_job(job_row(job))])
        label = self.metrics.job(job.name)
        self.metrics.runs_total.labels(label, run.state.value).inc()
        if run.started_at is not None:
            self.metrics.run_duration_seconds.labels(label).observe(now - run.started_at)
        log.info(
            "run.finished",
            run_id=run.id,
            job=job.name,
            state=run.state.value,
            attempts=run.attempts,
            duration_s=round(now - (run.started_at or run.created_at), 6),
        )
        if self.on_run_end is not None:
            try:
                await self.on_run_end(run)
            except Exception:  # the run has ended; a failing hook must not change that
                log.exception("run.end_hook_failed", run_id=run.id, job=job.name)
        return run

    # ----------------------------------------------------------------- control
    def cancel(self, run_id: str, reason: str = "cancelled by request") -> LiveRun | None:
        live = self.live.get(run_id)
        if live is None or live.task is None:
            return None
        live.cancel_reason = reason
        live.task.cancel()
        return live

    def unfinished(self, job: JobRuntime) -> int:
        return len(job.active)


def _timeout(spec: Any, phase: Phase) -> float:
    action = {Phase.PERFORM: spec.action, Phase.CHECK: spec.check, Phase.VERIFY: spec.verify}[
        phase
    ]
    t = getattr(action, "timeout", None)
    return float(t) if t is not None else float(spec.timeout)


def _mismatch(res: ActionResult) -> bool:
    v = res.value
    return isinstance(v, dict) and (v.get("match") is False or v.get("ok") is False)


def _log_write_failure(fut: asyncio.Future[None]) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:
        log.error("store.write_failed", error=str(exc))
