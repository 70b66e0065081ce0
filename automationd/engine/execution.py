"""Executing a run's phases: check → perform each pending target (→ verify) → end state.

Rules:
- The check phase runs only for a fresh run of a job that has one (retries skip it); it may
  skip the run, replace its targets and its payload.
- A run with one pending target performs it inline; a fan-out gives each target its own
  task in a TaskGroup, all bounded by the service gate and the worker pool.
- A target that fails (after its retries) is dead-lettered by the engine; the run's end state
  aggregates its targets (succeeded / partial / failed).
- Draining parks the run (``Drained``); it resumes at next start.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

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
from automationd.engine.attempts import Drained, run_phase
from automationd.engine.ending import end, fail_target, finish
from automationd.engine.pool import PoolClosed
from automationd.errors import ErrorKind
from automationd.records import Phase, RunError, Target
from automationd.store.runs import w_run, w_target

if TYPE_CHECKING:
    from automationd.engine.dispatcher import Engine
    from automationd.engine.liverun import LiveRun


async def execute(engine: Engine, live: LiveRun) -> None:
    """check → perform each pending target (→ verify) → the run's end state."""
    if engine.draining.is_set() and live.begun is None:  # a begun attempt is in flight
        raise Drained
    run = live.run
    if run.state is RunState.QUEUED or live.resumed:
        event = RunEvent.START if run.state is RunState.QUEUED else RunEvent.RESUME
        # Not written here: the first attempt's write (same batch) carries "running".
        live.run = run = run.evolve(
            state=next_run_state(run.state, event),
            started_at=run.started_at or engine.clock.time(),
        )
    if live.job.spec.check is not None and not live.skip_check and run.targets_total == 0:
        res = await run_phase(engine, live, Phase.CHECK, None)
        if isinstance(res, RunError):
            await finish(engine, live, RunEvent.FAIL, error=res)
            return
        if not res.perform:
            await finish(engine, live, RunEvent.SKIP, reason="check: nothing to perform")
            return
        _apply_check(engine, live, res)
    pending = [t for t in live.targets if t.state is TargetState.PENDING]
    if len(pending) == 1:
        await _do_target(engine, live, pending[0])
    elif pending:
        parked: list[bool] = []
        async with asyncio.TaskGroup() as tg:
            for t in pending:
                tg.create_task(
                    _target_task(engine, live, t, parked), name=f"target:{run.id}:{t.idx}"
                )
        if parked:
            raise Drained
    ok = sum(1 for t in live.targets if t.state is TargetState.SUCCEEDED)
    failed = len(live.targets) - ok
    event = aggregate(ok, failed, len(live.targets))
    err = None
    if event is not RunEvent.SUCCEED:
        err = next(t.error for t in live.targets if t.state is TargetState.FAILED)
    result = live.targets[0].result if len(live.targets) == 1 else None
    end(engine, live, event, error=err, result=result)


def _apply_check(engine: Engine, live: LiveRun, res: ActionResult) -> None:
    run = live.run
    explicit = res.targets if res.targets is not None else live.job.spec.targets
    tlist = list(explicit) if explicit is not None else [None]
    live.targets = [Target(run_id=run.id, idx=i, target=t) for i, t in enumerate(tlist)]
    live.persist_targets = explicit is not None
    payload = res.payload if res.payload is not None else run.payload
    live.run = run.evolve(payload=payload, targets_total=len(tlist), result=res.value)
    writes = [w_run(live.run)]
    if live.persist_targets:
        writes.extend(w_target(t) for t in live.targets)
    engine.post(writes)


async def _target_task(engine: Engine, live: LiveRun, target: Target, parked: list[bool]) -> None:
    try:
        await _do_target(engine, live, target)
    except (Drained, PoolClosed):
        parked.append(True)


async def _do_target(engine: Engine, live: LiveRun, target: Target) -> None:
    res = await run_phase(engine, live, Phase.PERFORM, target)
    if not isinstance(res, RunError) and live.job.spec.verify is not None:
        vres = await run_phase(engine, live, Phase.VERIFY, live.targets[target.idx])
        if isinstance(vres, RunError):
            res = vres
        elif _mismatch(vres):
            res = RunError(kind=ErrorKind.FATAL, message="verify reported a mismatch")
    target = live.targets[target.idx]
    if isinstance(res, RunError):
        fail_target(engine, live, target, res)
        return
    target = target.evolve(
        state=next_target_state(target.state, TargetEvent.SUCCEED), result=res.value
    )
    live.targets[target.idx] = target
    if live.persist_targets:
        engine.post([w_target(target)])


def _mismatch(res: ActionResult) -> bool:
    v = res.value
    return isinstance(v, dict) and (v.get("match") is False or v.get("ok") is False)
