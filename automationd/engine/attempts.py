"""One phase of one target: attempts, classification, backoff and the service/worker gates.

Rules:
- An attempt waits for its service gate (token, concurrency slot, 429 pause, breaker) first
  and for a global worker slot second, so waiting on a partner API never holds a worker.
- The attempt row is posted when it starts (outcome NULL) and again when it ends; a crash in
  between leaves the NULL that recovery reads as ``interrupted``. Exception, the lean path:
  the first attempt of a one-action run writes no row unless it fails or prints (the run row
  carries it; recovery reads "attempts=1 without a row" as interrupted).
- An attempt the gate refuses (breaker open) is still an attempt: recorded, and counted.
- A retryable failure with retries left waits out the backoff (``Retry-After`` honoured for
  ``rate_limited``), during which the run shows ``retrying`` if nothing else of it executes.
- While the daemon drains, no new attempt starts and backoffs end early: ``Drained``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import structlog
from structlog.typing import FilteringBoundLogger

from automationd.actions.base import ActionContext, ActionResult, build_action
from automationd.config.model import Backoff, JobSpec
from automationd.core.backoff import retry_delay
from automationd.core.runstate import RunEvent, RunState, next_run_state
from automationd.errors import ActionError, ErrorKind
from automationd.obs.metrics import JobMetrics
from automationd.records import Attempt, Phase, RunError, Target
from automationd.store.db import Write
from automationd.store.runs import w_attempt, w_attempt_pgid, w_run, w_target

if TYPE_CHECKING:
    from automationd.engine.dispatcher import Engine
    from automationd.engine.jobs import JobRuntime
    from automationd.engine.liverun import LiveRun

log = structlog.get_logger("automationd.engine")

_PHASE_SLOT = {Phase.PERFORM: 0, Phase.CHECK: 1, Phase.VERIFY: 2}
_DEFAULT_RL = Backoff(base=16.0, max=64.0, multiplier=2.0, jitter=0.2)


class Drained(Exception):
    """The daemon is draining: this run parks and resumes at next start."""


def prepare_job(engine: Engine, job: JobRuntime) -> None:
    """Per-job things made once, on the job's first attempt: actions, logger, metrics."""
    spec = job.spec
    job.actions = (
        build_action(spec.action, http=engine.http),
        build_action(spec.check, http=engine.http) if spec.check else None,
        build_action(spec.verify, http=engine.http) if spec.verify else None,
    )
    job.log = structlog.get_logger("automationd.action").bind(job=job.name)
    if job.meters is None:
        job.meters = JobMetrics(engine.metrics, job.name)


async def run_phase(
    engine: Engine, live: LiveRun, phase: Phase, target: Target | None
) -> ActionResult | RunError:
    """Attempts of one phase for one target until success, a fatal error or no retries left."""
    spec = live.job.spec
    per_target = target is not None and phase is Phase.PERFORM  # only perform counts there
    tries = live.targets[target.idx].attempts if target is not None and per_target else 0
    while True:
        if engine.draining.is_set() and live.begun is None:  # a begun attempt is in flight
            raise Drained
        try:
            return await _attempt(engine, live, phase, target, is_retry=tries > 0)
        except ActionError as exc:
            tries = (
                live.targets[target.idx].attempts
                if target is not None and per_target
                else tries + 1
            )
            if not exc.kind.retryable or tries > spec.retries:
                return RunError(kind=exc.kind, message=exc.message)
            gate = live.job.gate
            rl = gate.config.rate_limited_backoff if gate is not None else _DEFAULT_RL
            cap = gate.config.max_retry_after if gate is not None else 3600.0
            delay = retry_delay(exc.kind, tries, spec.backoff, rl, exc.retry_after, cap, engine.rng)
            await _backoff(engine, live, delay)


async def _backoff(engine: Engine, live: LiveRun, delay: float) -> None:
    if live.executing == 0 and live.run.state is RunState.RUNNING:
        live.run = live.run.evolve(state=next_run_state(live.run.state, RunEvent.BACKOFF))
        engine.post([w_run(live.run)])
    try:
        async with asyncio.timeout(delay):
            await engine.draining.wait()
    except TimeoutError:
        return
    raise Drained


async def _attempt(
    engine: Engine, live: LiveRun, phase: Phase, target: Target | None, *, is_retry: bool
) -> ActionResult:
    job = live.job
    gate = job.gate
    if gate is not None:
        entered = False
        try:
            async with gate.slot(is_retry=is_retry):
                entered = True
                await engine.pool.acquire(job.spec.priority)
                try:
                    return await _call(engine, live, phase, target)
                finally:
                    engine.pool.release()
        except ActionError as exc:
            if not entered:  # refused by the gate (breaker open): still an attempt
                _refused(engine, live, phase, target, exc)
            raise
    if live.begun is None:  # else the inline path holds the slot for this attempt
        await engine.pool.acquire(job.spec.priority)
    try:
        return await _call(engine, live, phase, target)
    finally:
        engine.pool.release()


def _refused(
    engine: Engine, live: LiveRun, phase: Phase, target: Target | None, exc: ActionError
) -> None:
    """Record an attempt the gate refused: it counts toward retries and shows its kind."""
    now = engine.clock.time()
    run = live.run = live.run.evolve(attempts=live.run.attempts + 1)
    tidx = target.idx if target is not None else -1
    writes = _counted(live, phase, target)
    writes.append(
        w_attempt(
            Attempt(
                run_id=run.id,
                n=run.attempts,
                phase=phase,
                target=target.target if target is not None else None,
                target_idx=tidx,
                started_at=now,
                finished_at=now,
                outcome=exc.kind.value,
                error=exc.message,
            )
        )
    )
    engine.post(writes)
    if live.job.meters is None:
        prepare_job(engine, live.job)
    assert live.job.meters is not None
    live.job.meters.attempt(exc.kind.value)


def _counted(live: LiveRun, phase: Phase, target: Target | None) -> list[Write]:
    """The rows of an attempt just counted on ``live.run``: the run's, and, for a perform,
    its target's (whose own count goes up too) when targets are persisted."""
    writes = [w_run(live.run)]
    if target is not None and phase is Phase.PERFORM:
        cur = live.targets[target.idx]
        live.targets[target.idx] = cur = cur.evolve(attempts=cur.attempts + 1)
        if live.persist_targets:
            writes.append(w_target(cur))
    return writes


@dataclass(frozen=True, slots=True)
class Opened:
    """An attempt counted and described but not yet called: its context and its rows."""

    ctx: ActionContext
    action: Any  # the phase's runner (actions/base.py ``Action``)
    lean: bool
    writes: list[Write]  # "attempt started": posted by whoever calls the action
    target_idx: int
    started_at: float

    def attempt(self) -> Attempt:
        """The attempt's record, made only when a row is written (a lean success has none)."""
        c = self.ctx
        return Attempt(
            run_id=c.run_id,
            n=c.attempt,
            phase=c.phase,
            target=c.target,
            target_idx=self.target_idx,
            started_at=self.started_at,
        )


@dataclass(frozen=True, slots=True)
class Begun:
    """An attempt the inline path (engine/inline.py) started and hands over to a task.

    ``pending`` is the rest of the call (an awaitable) or its failure (``ActionError``):
    whatever the task resumes.
    """

    opened: Opened
    pending: Any


def phase_action(engine: Engine, job: JobRuntime, phase: Phase) -> Any:
    """The job's runner for ``phase`` (built on the job's first attempt)."""
    if job.actions is None:
        prepare_job(engine, job)
    assert job.actions is not None
    action = job.actions[_PHASE_SLOT[phase]]
    assert action is not None, f"job {job.name} has no {phase} action"
    return action


def attempt_context(
    engine: Engine, live: LiveRun, action: Any, n: int, phase: Phase, target: Target | None
) -> ActionContext:
    """What attempt ``n`` of ``phase`` (for ``target``) may know: the action's ``ctx``."""
    job = live.job
    run_id = live.run.id
    on_spawn = None
    if getattr(action, "spawns", False):

        def on_spawn(pgid: int) -> None:
            engine.post([w_attempt_pgid(run_id, n, pgid)])

    return ActionContext(
        job=job.name,
        run_id=run_id,
        attempt=n,
        phase=phase,
        target=target.target if target is not None else None,
        payload=live.run.payload,
        log=cast(FilteringBoundLogger, _LazyLog(job.log, run_id, n, phase)),
        service=job.spec.service,
        timeout=_timeout(job.spec, phase),
        idempotency_key=f"{run_id}/{target.idx if target is not None else 0}",
        on_spawn=on_spawn,
        on_http_response=job.gate.observe_http if job.gate is not None else None,
    )


def open_attempt(
    engine: Engine,
    live: LiveRun,
    phase: Phase,
    target: Target | None,
    *,
    begun: tuple[ActionContext, float] | None = None,
) -> Opened:
    """Count the attempt on the run (and target) and build its context; post nothing.

    ``begun`` is the inline path's (ctx, start time) of an attempt already called on a
    queued run: the run moves to running with it, in the same copy.
    """
    action = phase_action(engine, live.job, phase)
    run = live.run
    n = run.attempts + 1
    if begun is not None:
        ctx, now = begun
        run = run.evolve(
            state=next_run_state(run.state, RunEvent.START), started_at=now, attempts=n
        )
    else:
        now = engine.clock.time()
        if run.state is RunState.RETRYING:
            run = run.evolve(state=next_run_state(run.state, RunEvent.RESUME), attempts=n)
        else:
            run = run.evolve(attempts=n)
    live.run = run
    if begun is None:
        ctx = attempt_context(engine, live, action, n, phase, target)
    tidx = target.idx if target is not None else -1
    writes = _counted(live, phase, target)
    # Lean path: the first attempt of a one-action run needs no row of its own unless it
    # fails or prints: the run row (attempts=1, started_at, state) says all of it, runs.get
    # rebuilds it, and recovery reads "attempts=1 without a row" as interrupted.
    lean = n == 1 and not live.persist_targets and phase is Phase.PERFORM and live.lean
    opened = Opened(ctx, action, lean, writes, tidx, now)
    if not lean:
        writes.append(w_attempt(opened.attempt()))
    return opened


async def _call(engine: Engine, live: LiveRun, phase: Phase, target: Target | None) -> ActionResult:
    begun, live.begun = live.begun, None
    if begun is None:
        if engine.draining.is_set():
            raise Drained
        opened = open_attempt(engine, live, phase, target)
        engine.post(opened.writes)
        pending: Any = None
    else:
        opened, pending = begun.opened, begun.pending
    live.executing += 1
    result: ActionResult | None = None
    error: ActionError | None = None
    try:
        if pending is None:
            result = await opened.action(opened.ctx)
        elif isinstance(pending, ActionError):
            error = pending
        else:
            result = await pending
    except ActionError as exc:
        error = exc
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # an action bug is a retryable failure, never a crash
        error = ActionError(f"{type(exc).__name__}: {exc}", kind=ErrorKind.RETRYABLE)
    finally:
        live.executing -= 1
    return close_attempt(engine, live, opened, result, error)


def close_attempt(
    engine: Engine,
    live: LiveRun,
    opened: Opened,
    result: ActionResult | None,
    error: ActionError | None,
) -> ActionResult:
    """Record how the attempt went (row, metrics, service gate); raise its error, if any."""
    job = live.job
    outcome = "ok" if error is None else error.kind.value
    output = result.output if result is not None else getattr(error, "output", ())
    stdout = stderr = None
    for stream, text in output:
        if stream == "stdout":
            stdout = text
        elif stream == "stderr":
            stderr = text
    if not (opened.lean and error is None and stdout is None and stderr is None):
        engine.post(
            [
                w_attempt(
                    opened.attempt().evolve(
                        finished_at=engine.clock.time(),
                        outcome=outcome,
                        error=error.message if error else None,
                    ),
                    stdout=stdout,
                    stderr=stderr,
                )
            ]
        )
    assert job.meters is not None
    job.meters.attempt(outcome)
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


class _LazyLog:
    """``ctx.log``: binds run, attempt and phase on first use, so actions that never log
    (most of them) never pay for a bind."""

    __slots__ = ("_base", "_bound", "_kw")

    def __init__(self, base: Any, run_id: str, attempt: int, phase: Phase) -> None:
        self._base = base
        self._bound: Any = None
        self._kw = (run_id, attempt, phase)

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            run_id, attempt, phase = self._kw
            self._bound = self._base.bind(run_id=run_id, attempt=attempt, phase=phase.value)
        return getattr(self._bound, name)


def _timeout(spec: JobSpec, phase: Phase) -> float:
    action = (
        spec.action
        if phase is Phase.PERFORM
        else (spec.check if phase is Phase.CHECK else spec.verify)
    )
    t = getattr(action, "timeout", None)
    return float(t) if t is not None else float(spec.timeout)
