"""One phase of one target: its attempts, their gates, durable starts and backoff.

Rules:
- An attempt waits for its service gate (token, concurrency slot, 429 pause, breaker) first
  and for a worker slot second, so waiting on a partner API never holds a worker.
- An attempt is durable before its action starts: "attempt n started" (its row with no
  outcome, the run's and target's counts) is committed, and only then is the action called,
  in the run's own task. A crash in between leaves that row for recovery to close as
  ``interrupted``, which counts as a retryable failure: a crash loop ends in the DLQ.
  The launcher opens a run's first attempt in the same commit as the run itself when a
  worker is free at once (``open_attempt`` then, the call here).
- If that commit fails (the store is full or down), the action does not start: the attempt
  waits for the store to be healthy and commits again, holding its slot.
- An attempt's end row is not written on its own: it rides with the run's next write (the
  next attempt's start, a backoff, a target's or the run's end), so the end of the attempt
  that ends a run is stored in the same unit as the run's end. Were it stored first, a
  crash in between would leave a finished attempt on a live run, and the action would run
  again with no ``interrupted`` attempt on record.
- An attempt the gate refuses (breaker open) is still an attempt: recorded and counted.
- A retryable failure with retries left waits out the backoff (``Retry-After`` honoured for
  ``rate_limited``), shown as ``retrying`` while nothing else of the run executes.
- While the daemon drains, no new attempt starts and backoffs end early: ``Drained``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import structlog

from automationd.actions.base import Action, ActionContext, ActionResult, HttpClients
from automationd.actions.build import build_action
from automationd.clock import Clock
from automationd.config.model import MAX_RETRY_AFTER, RATE_LIMITED_BACKOFF, JobSpec
from automationd.core.backoff import retry_delay
from automationd.core.runstate import RunEvent, RunState, next_run_state
from automationd.engine.context import attempt_context
from automationd.engine.jobs import JobRuntime
from automationd.engine.live import Actions, LiveRun, LiveTarget
from automationd.engine.pool import WorkerPool
from automationd.errors import ActionError, ErrorKind, StoreError
from automationd.obs.metrics import Metrics
from automationd.records import Attempt, Phase, RunError
from automationd.store.api import Store, Write
from automationd.store.attempt_row import (
    AttemptHead,
    attempt_head,
    w_attempt_end,
    w_attempt_start,
)
from automationd.store.rows import w_attempt, w_run, w_target

log = structlog.get_logger("automationd.engine")

_SLOT = {Phase.PERFORM: 0, Phase.CHECK: 1, Phase.VERIFY: 2, Phase.UNDO: 3}


class Drained(Exception):
    """The daemon is draining: this run parks and resumes at next start."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptTools:
    """What running attempts needs, and nothing else."""

    clock: Clock
    store: Store
    pool: WorkerPool
    http: HttpClients
    metrics: Metrics
    rng: random.Random
    draining: asyncio.Event


@dataclass(frozen=True, slots=True)
class Opened:
    """An attempt counted and made durable-to-be: what calling it needs."""

    n: int
    phase: Phase
    target: LiveTarget | None
    action: Action
    ctx: ActionContext
    started_at: float
    head: AttemptHead  # its row's identity, shared by its start and end rows

    def record(self, run_id: str, **end: Any) -> Attempt:
        t = self.target
        return Attempt(
            run_id=run_id,
            n=self.n,
            phase=self.phase,
            target=t.value if t is not None else None,
            target_idx=t.idx if t is not None else -1,
            started_at=self.started_at,
            **end,
        )


def prepare_job(t: AttemptTools, job: JobRuntime) -> None:
    """Per-job things made once, on the job's first attempt: actions, logger."""
    job.actions = _build_actions(t, job.spec)
    job.log = structlog.get_logger("automationd.action").bind(job=job.name)


def _build_actions(t: AttemptTools, spec: JobSpec) -> Actions:
    return (
        build_action(spec.action, http=t.http),
        build_action(spec.check, http=t.http) if spec.check else None,
        build_action(spec.verify, http=t.http) if spec.verify else None,
        build_action(spec.undo, http=t.http) if spec.undo else None,
    )


def _actions_of(t: AttemptTools, live: LiveRun) -> Actions:
    """The actions of the definition the run follows: its job's (built on the job's first
    attempt), or, for a run pinned to an older definition, that one's."""
    job = live.job
    if job.actions is None or job.log is None:
        prepare_job(t, job)
    pinned = live.pinned
    if pinned is None:
        assert job.actions is not None
        return job.actions
    spec, actions = pinned
    if actions is None:
        actions = _build_actions(t, spec)
        live.pinned = (spec, actions)
    found: Actions = actions
    return found


def open_attempt(
    t: AttemptTools,
    live: LiveRun,
    phase: Phase,
    target: LiveTarget | None,
    *,
    now: float | None = None,
    rows: bool = True,
) -> tuple[Opened, list[Write]]:
    """Count attempt n on the run (and target) and describe it; nothing is submitted.

    The rows returned say "attempt n started": whoever commits them may then call it.
    ``rows`` False: the caller writes what they say itself (engine/herd.py, for many runs
    at once, at ``now``).
    """
    job = live.job
    primed, live.primed = live.primed, None
    action: Action | None
    if primed is not None and primed[0] is phase and not live.attempts and job.gate is None:
        action, ctx = primed[1], primed[2]  # made with the run, ahead of its fire (``prime``)
    else:
        action, ctx = _actions_of(t, live)[_SLOT[phase]], None
    assert action is not None, f"job {job.name} has no {phase} action"
    if now is None:
        now = t.clock.time()
    if live.state is RunState.QUEUED or live.state is RunState.RETRYING:
        event = RunEvent.START if live.state is RunState.QUEUED else RunEvent.RESUME
        live.state = next_run_state(live.state, event)
    if live.started_at is None:
        live.started_at = now
    live.attempts = n = live.attempts + 1
    writes = live.riding([w_run(live)]) if rows else []
    if target is not None:
        if phase is Phase.PERFORM:
            target.attempts += 1
        if live.persist_targets and rows:
            writes.append(w_target(target.snapshot(live.id)))
    if ctx is None:
        ctx = attempt_context(t.store, live, action, n, phase, target)
    if target is None:
        head = attempt_head(live.id, n, phase, -1, None, now)
    else:
        head = attempt_head(live.id, n, phase, target.idx, target.value, now)
    if rows:
        writes.append(w_attempt_start(head))
    return Opened(n, phase, target, action, ctx, now, head), writes


def prime(t: AttemptTools, live: LiveRun, phase: Phase, target: LiveTarget | None) -> None:
    """Make attempt 1's action and context now, for a run made ahead of its fire (engine/
    ahead.py): at its due time ``open_attempt`` only counts it. Any change to the job before
    then drops the run; a service gate (its context differs) gets none."""
    if live.job.gate is None and not live.attempts:
        action = _actions_of(t, live)[_SLOT[phase]]
        if action is not None:
            live.primed = (phase, action, attempt_context(t.store, live, action, 1, phase, target))


async def run_phase(
    t: AttemptTools, live: LiveRun, phase: Phase, target: LiveTarget | None, *, tries: int
) -> ActionResult | RunError:
    """Attempts of one phase for one target until success, a fatal error or no retries left.

    ``tries`` is how many attempts of this phase already failed (after a crash, the
    interrupted ones).
    """
    spec = live.spec
    opened, live.first = live.first, None
    while True:
        try:
            return await _attempt(t, live, phase, target, tries > 0, opened)
        except ActionError as exc:
            opened = None
            tries += 1
            if not exc.kind.retryable or tries > spec.retries:
                return RunError(kind=exc.kind, message=exc.message)
            gate = live.job.gate
            rl = gate.config.rate_limited_backoff if gate is not None else RATE_LIMITED_BACKOFF
            cap = gate.config.max_retry_after if gate is not None else MAX_RETRY_AFTER
            delay = retry_delay(exc.kind, tries, spec.backoff, rl, exc.retry_after, cap, t.rng)
            log.warning(  # a retrying job is not silent until its end
                "attempt.failed",
                run_id=live.id,
                job=live.job_name,
                phase=phase.value,
                kind=exc.kind.value,
                error=exc.message,
                next_in=round(delay, 3),
            )
            await _backoff(t, live, delay)


async def _backoff(t: AttemptTools, live: LiveRun, delay: float) -> None:
    if live.executing == 0 and live.state is RunState.RUNNING:
        live.state = next_run_state(live.state, RunEvent.BACKOFF)
        t.store.post(live.riding([w_run(live)]))
    elif live.unposted:
        t.store.post(live.riding([]))
    try:
        async with asyncio.timeout(delay):
            await t.draining.wait()
    except TimeoutError:
        return
    raise Drained


async def _attempt(
    t: AttemptTools,
    live: LiveRun,
    phase: Phase,
    target: LiveTarget | None,
    is_retry: bool,
    opened: Opened | None,
) -> ActionResult:
    if opened is not None:  # the launcher opened it with the run, and holds its worker slot
        try:
            return await _call(t, live, opened)
        finally:
            t.pool.release()
    gate = live.job.gate
    if gate is None:
        await t.pool.acquire(live.spec.priority)
        try:
            return await _call(t, live, await _open_durably(t, live, phase, target))
        finally:
            t.pool.release()
    entered = False
    try:
        async with gate.slot(is_retry=is_retry):
            entered = True
            await t.pool.acquire(live.spec.priority)
            try:
                return await _call(t, live, await _open_durably(t, live, phase, target))
            finally:
                t.pool.release()
    except ActionError as exc:
        if not entered:  # refused by the gate (breaker open): still an attempt
            _refused(t, live, phase, target, exc)
        raise


async def _open_durably(
    t: AttemptTools, live: LiveRun, phase: Phase, target: LiveTarget | None
) -> Opened:
    if t.draining.is_set():
        raise Drained
    opened, writes = open_attempt(t, live, phase, target)
    while True:
        try:
            await t.store.commit(writes)
            return opened
        except StoreError:  # not started: wait for the store, then say it again
            await t.store.wait_healthy()
            if t.draining.is_set():
                raise Drained from None


def _refused(
    t: AttemptTools, live: LiveRun, phase: Phase, target: LiveTarget | None, exc: ActionError
) -> None:
    """Record an attempt the gate refused: it counts toward retries and shows its kind."""
    opened, writes = open_attempt(t, live, phase, target)
    writes[-1] = w_attempt(
        opened.record(
            live.id, finished_at=opened.started_at, outcome=exc.kind.value, error=exc.message
        )
    )
    t.store.post(writes)
    live.job.meters_on(t.metrics).attempt(exc.kind.value)


async def _call(t: AttemptTools, live: LiveRun, opened: Opened) -> ActionResult:
    live.executing += 1
    result: ActionResult | None = None
    error: ActionError | None = None
    try:
        result = await opened.action(opened.ctx)
    except ActionError as exc:
        error = exc
    except asyncio.CancelledError:
        if live.cancel_reason is not None:  # runs.cancel: the attempt ends, recorded so
            _close(t, live, opened, None, ActionError(live.cancel_reason, kind=ErrorKind.CANCELLED))
        raise  # (at shutdown the row stays open: recovery records it as interrupted)
    except Exception as exc:  # an action bug is a retryable failure, never a crash
        error = ActionError(f"{type(exc).__name__}: {exc}", kind=ErrorKind.RETRYABLE)
    finally:
        live.executing -= 1
    _close(t, live, opened, result, error)
    if error is not None:
        raise error
    assert result is not None
    return result


def _close(
    t: AttemptTools,
    live: LiveRun,
    opened: Opened,
    result: ActionResult | None,
    error: ActionError | None,
) -> None:
    """Record how the attempt went: its row, its metrics, and the service gate's view."""
    outcome = "ok" if error is None else error.kind.value
    output = result.output if result is not None else error.output if error is not None else ()
    stdout = stderr = None
    if output:
        streams = dict(output)
        stdout, stderr = streams.get("stdout"), streams.get("stderr")
    message = error.message if error is not None else None
    ended = t.clock.time()
    end = w_attempt_end(opened.head, ended, outcome, message, stdout, stderr)
    if live.unposted is None:
        live.unposted = [end]
    else:
        live.unposted.append(end)
    live.job.meters_on(t.metrics).attempt(outcome)
    log.debug(
        "attempt.finished",
        run_id=live.id,
        n=opened.n,
        phase=opened.phase.value,
        target=opened.target.value if opened.target is not None else None,
        outcome=outcome,
        duration_s=round(ended - opened.started_at, 6),
    )
    gate = live.job.gate
    if gate is not None and (error is None or error.kind is not ErrorKind.CANCELLED):
        gate.report(
            ok=error is None,
            kind=error.kind if error else None,
            retry_after=error.retry_after if error else None,
        )
