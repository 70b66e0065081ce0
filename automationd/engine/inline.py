"""Runs that finish inside the callback that learns they are durable: no task at all.

Why: on a busy daemon most runs are one python action that returns without waiting (a no-op,
a cache write, a hand-off to something in memory). For those, a task, its coroutine chain and
the futures around it cost more than the run itself. The inline path does what the run's task
would do (engine/execution.py and attempts.py), in one synchronous step:

    queued → running, attempt 1 opened → the callable stepped once (``PythonRunner.begin``)
    → attempt closed → target succeeded → run ended (reported once its end is durable)

Anything off that straight line (the callable suspends or fails) is handed to a task that
resumes the attempt exactly where it stands (``LiveRun.begun``) and carries on along the usual
path, so timeouts, retries, backoff and dead-lettering are written once, in the usual place.

Only runs that could not behave differently in a task qualify: a lean job (one action, no
check or verify, no service gate), one implicit target, a fresh run (not resumed, not queued
behind another, not cancelled) and a worker slot free right now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from automationd.actions.base import ActionResult
from automationd.core.runstate import (
    RunEvent,
)
from automationd.engine.attempts import Begun, attempt_context, open_attempt, phase_action
from automationd.engine.ending import end, end_at_once
from automationd.errors import ActionError, ErrorKind
from automationd.records import Phase, RunError

if TYPE_CHECKING:
    from automationd.engine.dispatcher import Engine
    from automationd.engine.liverun import LiveRun

log = structlog.get_logger("automationd.engine")


def run_inline(engine: Engine, live: LiveRun) -> bool:
    """Run ``live`` now if it qualifies; False (nothing changed) leaves it to a task."""
    job = live.job
    # Only fresh, queued runs come here (resumed ones go straight to a task).
    if (
        not live.lean
        or live.target_list is not None  # explicit targets (or a check deciding them)
        or live.after
        or job.gate is not None
        or live.cancel_reason is not None
    ):
        return False
    action = phase_action(engine, job, Phase.PERFORM)
    begin = getattr(action, "begin", None)
    if begin is None or not engine.pool.try_acquire():
        return False
    held = True
    try:
        now = engine.clock.time()
        run = live.run
        ctx = attempt_context(engine, live, action, run.attempts + 1, Phase.PERFORM, None)
        try:
            out = begin(ctx)
        except ActionError as exc:
            out = exc
        if not isinstance(out, ActionResult):  # it waits, or failed: a task takes over
            opened = open_attempt(engine, live, Phase.PERFORM, live.targets[0], begun=(ctx, now))
            engine.post(opened.writes)  # "running, attempt 1", as the task path posts it
            live.begun = Begun(opened, out)
            held = False  # the task's attempt releases the slot
            engine.spawn(live)
            return True
        held = False
        engine.pool.release()
        # queued → running → succeeded in one step: the rows the task path would post on
        # the way would collapse into the end's row anyway. (The implicit target's record
        # is never made: the run leaves memory now and nothing reads it.)
        end_at_once(engine, live, now, out.value)
    except Exception as exc:  # a bug must not take the daemon down: fail this run only
        log.exception("run.internal_error", run_id=live.run.id, job=job.name)
        if held:
            engine.pool.release()
        if live.begun is not None:
            return True  # the task owns it now
        if not live.run.state.terminal:
            end(
                engine,
                live,
                RunEvent.FAIL,
                error=RunError(kind=ErrorKind.FATAL, message=f"internal error: {exc!r}"),
            )
    engine.forget(live)
    return True
