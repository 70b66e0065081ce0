"""A run's life, in its own task: check → perform each target (→ verify) → its end state.

This is the one place to read what a run does; the launcher (engine/launcher.py) only
creates it and starts this task, attempts (engine/attempt.py) do one phase of one target, and
the report (engine/report.py) ends it.

Rules:
- The task is the run's own (``asyncio.current_task()`` inside every action of the run, with a
  fresh ``contextvars`` context): user code never runs in a store callback, the writer, an
  admin connection or another run's task.
- The check phase runs only for a run of a job that has one and whose targets it has not
  decided yet (retries skip it); it may skip the run, and replace its targets and payload.
- A run with one pending target performs it in the run's task; a fan-out gives each target a
  task of its own in a TaskGroup, all bounded by the service gate and the worker pool.
- A target that fails (after its retries) is dead-lettered; the run's end state aggregates
  its targets: succeeded / partial / failed.
- Draining (shutdown) parks the run where it is (``Drained``); it resumes at next start.
- ``runs.cancel`` cancels the task: the run ends ``cancelled`` (a rollback ends ``failed``:
  what it had not undone yet is still applied). A cancellation with no reason is the daemon
  stopping: the run stays as it is on disk and resumes at next start.
- A bug in the engine fails that run, never the daemon.
- Previews, applies and rollbacks take their own turns here (engine/plan.py, engine/undo.py):
  a ``preview`` run only plans; an ``apply`` run decides whether its preview still holds
  before its targets are performed; a ``rolling_back`` run undoes; and a job with
  ``on_failure = "rollback"`` rolls a ``partial``/``failed`` end back in the same task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from automationd.actions.base import ActionResult
from automationd.core.runstate import (
    RunEvent,
    RunState,
    TargetEvent,
    TargetState,
    aggregate,
    next_run_state,
    next_target_state,
)
from automationd.engine.attempt import AttemptTools, Drained, run_phase
from automationd.engine.herd import Starts
from automationd.engine.live import LiveRun, LiveTarget
from automationd.engine.plan import decide_apply, preview, tell_decided
from automationd.engine.pool import PoolClosed
from automationd.engine.report import Report
from automationd.engine.undo import roll_back, wants_rollback
from automationd.errors import ErrorKind
from automationd.records import Phase, RunError, Trigger
from automationd.store.rows import w_attempt, w_run, w_target

log = structlog.get_logger("automationd.engine")


@dataclass(frozen=True, slots=True)
class RunParts:
    """What a run's task needs: attempts, the report, and who to tell when it leaves."""

    attempts: AttemptTools
    report: Report
    leave: Callable[[LiveRun], None]
    debug: bool = False  # run.* debug lines wanted (asked once: a no-op call costs ~1 µs)
    starts: Starts = field(default_factory=Starts)


async def life(parts: RunParts, live: LiveRun) -> None:
    """The run's task body, from its first step to leaving memory."""
    live.started = True
    if live.herd:
        parts.starts.done(live)
    structlog.contextvars.bind_contextvars(run_id=live.id)
    try:
        if live.abandoned:
            return
        for prev in live.after:
            if not prev.done():
                await asyncio.wait([prev])
        if live.cancel_reason is not None:
            raise asyncio.CancelledError
        t, report = parts.attempts, parts.report
        if live.state is RunState.ROLLING_BACK:
            await roll_back(t, report, live)
        elif live.trigger is Trigger.PREVIEW:
            await preview(t, report, live)
        else:
            await _execute(parts, live)
            if wants_rollback(live):
                await roll_back(t, report, live)
    except (Drained, PoolClosed):
        log.info("run.parked", run_id=live.id, job=live.job_name)
    except asyncio.CancelledError:
        if live.cancel_reason is None:
            raise  # the daemon is stopping: the run resumes at next start
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        _unopen(parts, live)
        err = None
        if live.state is RunState.ROLLING_BACK:
            err = RunError(kind=ErrorKind.CANCELLED, message="rollback cancelled: not all undone")
        parts.report.end(live, RunEvent.CANCEL, error=err, reason=live.cancel_reason)
    except Exception as exc:  # a bug must not take the daemon down: fail this run only
        log.exception("run.internal_error", run_id=live.id, job=live.job_name)
        _unopen(parts, live)
        if not live.state.terminal:
            err = RunError(kind=ErrorKind.FATAL, message=f"internal error: {exc!r}")
            parts.report.end(live, RunEvent.FAIL, error=err)
    finally:
        if live.first is not None:
            parts.attempts.pool.release()  # an opened attempt that never ran (shutdown)
            live.first = None
        if live.unposted:  # a parked run's last attempt end: stored before it leaves
            parts.attempts.store.post(live.riding([]))
        tell_decided(live)
        parts.leave(live)


async def _execute(parts: RunParts, live: LiveRun) -> None:
    t, report = parts.attempts, parts.report
    if live.resumed and live.state is not RunState.RUNNING:
        live.state = next_run_state(live.state, RunEvent.RESUME)
    if parts.debug:
        log.debug("run.started", run_id=live.id, job=live.job_name, resumed=live.resumed)
    if live.basis is not None:  # an apply not decided yet
        if not await decide_apply(t, report, live):
            return
    elif live.needs_check:
        if parts.debug:
            log.debug("run.phase", run_id=live.id, phase="check")
        res = await run_phase(t, live, Phase.CHECK, None, tries=live.check_tries)
        if isinstance(res, RunError):
            report.end(live, RunEvent.FAIL, error=res)
            return
        if not res.perform:
            report.end(live, RunEvent.SKIP, reason="check: nothing to perform", result=res.value)
            return
        _apply_check(parts, live, res)
    pending = [x for x in live.targets if x.state is TargetState.PENDING]
    if parts.debug:
        log.debug("run.phase", run_id=live.id, phase="perform", targets=len(pending))
    if len(pending) == 1:
        await _do_target(parts, live, pending[0])
    elif pending:
        parked: list[bool] = []
        async with asyncio.TaskGroup() as tg:
            for x in pending:
                tg.create_task(
                    _target_task(parts, live, x, parked), name=f"target:{live.id}:{x.idx}"
                )
        if parked:
            raise Drained
    event = aggregate(live.targets_succeeded, live.targets_failed, len(live.targets))
    err = None
    if event is not RunEvent.SUCCEED:
        err = next(x.error for x in live.targets if x.state is TargetState.FAILED)
    result = live.targets[0].result if len(live.targets) == 1 else None
    if not parts.starts.idle.is_set():  # herd runs call their actions first (``Starts``)
        await parts.starts.idle.wait()
    report.end(live, event, error=err, result=result)


def _apply_check(parts: RunParts, live: LiveRun, res: ActionResult) -> None:
    """The check decided: its targets (or the job's), its payload, its value as the result."""
    explicit = res.targets if res.targets is not None else live.spec.targets
    values = list(explicit) if explicit is not None else [None]
    live.targets = [LiveTarget(i, v) for i, v in enumerate(values)]
    live.persist_targets = explicit is not None
    live.needs_check = False
    if res.payload is not None:
        live.payload = res.payload
    live.result = res.value
    writes = live.riding([w_run(live)])
    if live.persist_targets:
        writes.extend(w_target(x.snapshot(live.id)) for x in live.targets)
    parts.attempts.store.post(writes)


async def _target_task(
    parts: RunParts, live: LiveRun, target: LiveTarget, parked: list[bool]
) -> None:
    try:
        await _do_target(parts, live, target)
    except (Drained, PoolClosed):
        parked.append(True)


async def _do_target(parts: RunParts, live: LiveRun, target: LiveTarget) -> None:
    t = parts.attempts
    # ``tries`` counts this target's perform attempts that already ENDED (failed, or cut
    # short by a crash); a first attempt the launcher opened with the run is counted on the
    # target but has not run yet, so it is not one of them.
    pending = 1 if live.first is not None and live.first.target is target else 0
    res = await run_phase(t, live, Phase.PERFORM, target, tries=target.attempts - pending)
    if not isinstance(res, RunError) and live.spec.verify is not None:
        log.debug("run.phase", run_id=live.id, phase="verify", target=target.value)
        vres = await run_phase(t, live, Phase.VERIFY, target, tries=0)
        if isinstance(vres, RunError):
            res = vres
        elif _mismatch(vres):
            res = RunError(kind=ErrorKind.FATAL, message="verify reported a mismatch")
    if isinstance(res, RunError):
        target.state = next_target_state(target.state, TargetEvent.FAIL)
        target.error = res
        live.targets_failed += 1
        parts.report.dead_letter(live, target, res)
        return
    target.state = next_target_state(target.state, TargetEvent.SUCCEED)
    target.result = res.value
    live.targets_succeeded += 1
    if live.persist_targets:
        t.store.post(live.riding([w_target(target.snapshot(live.id))]))


def _unopen(parts: RunParts, live: LiveRun) -> None:
    """A run ending before its opened first attempt ran: that attempt ends cancelled."""
    opened = live.first
    if opened is None:
        return
    live.first = None
    parts.attempts.pool.release()
    t = parts.attempts
    record = opened.record(
        live.id, finished_at=t.clock.time(), outcome=ErrorKind.CANCELLED.value, error="not run"
    )
    t.store.post(live.riding([w_attempt(record)]))


def _mismatch(res: ActionResult) -> bool:
    v = res.value
    return isinstance(v, dict) and (v.get("match") is False or v.get("ok") is False)
