"""Crash recovery: runs found queued, running or retrying at start resume under the same id.

Rules (SPEC §4):
- finished targets are not redone; each unfinished one gets a new attempt;
- an attempt row without an outcome was interrupted by the crash (every attempt is durable
  before its action starts, engine/attempt.py): it is closed with kind ``interrupted`` and
  counts as a retryable failure (its target's attempt count already includes it), so a target
  whose interrupted attempt was its last allowed one goes to the dead-letter queue — a crash
  loop ends there, whatever the action did to the daemon;
- exec children of the dead process are killed if they still run (matched by pgid and the
  run id in their environment);
- a run whose job no longer exists fails with a clear error, ended by the report like any
  other run (its end row and ``run.failed`` event as one unit); its open attempts close too;
- an apply run that had not decided yet decides again against its preview (read back); a
  rollback goes on with the targets it has not undone, counting only its own undo tries;
- a run made ahead of its fire that never started (engine/ahead.py) is deleted, not
  resumed: nothing may start before its due time, and the scheduler, placed after this,
  treats that fire as if the run had never been made (its misfire policy decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from automationd.actions.exec import kill_orphans
from automationd.core.plan import Plan, plan_from_json
from automationd.core.runstate import (
    RunEvent,
    RunState,
    TargetEvent,
    TargetState,
    next_target_state,
)
from automationd.engine.ahead import made_ahead
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.live import LiveRun
from automationd.engine.report import Report
from automationd.errors import ErrorKind
from automationd.records import Phase, Run, RunError, Target, Trigger
from automationd.store.ahead_rows import w_run_delete
from automationd.store.api import Store, Write
from automationd.store.rows import w_attempt_interrupted

log = structlog.get_logger("automationd.recovery")

INTERRUPTED = "the daemon stopped during this attempt"


async def recover(
    *, store: Store, jobs: JobTable, launcher: Launcher, report: Report, now: float
) -> int:
    """Resume every live run; returns how many were resumed."""
    return await resume_runs(
        await store.live_runs(), store=store, jobs=jobs, launcher=launcher, report=report, now=now
    )


async def resume_runs(
    found: list[Run],
    *,
    store: Store,
    jobs: JobTable,
    launcher: Launcher,
    report: Report,
    now: float,
    targets: Mapping[str, list[Target]] | None = None,
) -> int:
    """Resume ``found``, unfinished runs this daemon now holds: at start-up, or claimed from
    a daemon that stopped or was declared dead (engine/crew.py). Returns how many.

    ``targets``: the runs' stored targets when the caller read them at once (a claim of
    many runs); a run that never started an attempt has no attempt rows to read. A run this
    daemon already runs (``Launcher.holds``) is left alone: resuming it would close its open
    attempt as interrupted while its action runs, and run it twice."""
    held = [run.id for run in found if launcher.holds(run.id)]
    if held:
        log.warning("recovery.already_live", runs=len(held), run_id=held[0])
        found = [run for run in found if not launcher.holds(run.id)]
    early = [run for run in found if made_ahead(run)]
    if early:
        await store.commit([w_run_delete(run.id) for run in early])
        log.info("recovery.ahead_dropped", runs=len(early))
        found = [run for run in found if not made_ahead(run)]
    if not found:
        return 0
    orphans: list[tuple[int, str]] = []
    closes: list[Write] = []
    resumed: list[LiveRun] = []
    jobless: list[Run] = []
    for run in found:
        started = run.attempts > 0  # attempt rows are written with the count, in one unit
        for a in await store.open_attempts(run.id) if started else ():
            closes.append(w_attempt_interrupted(run.id, a.n, now, INTERRUPTED))
            if a.pgid:
                orphans.append((a.pgid, run.id))
        job = jobs.get(run.job)
        if job is None:
            jobless.append(run)
            continue
        rows = targets.get(run.id, []) if targets is not None else await store.target_rows(run.id)
        live = LiveRun.from_stored(run, job, rows)
        attempts = await store.attempts(run.id) if started else []
        if not live.persist_targets and live.targets:  # the implicit target: recount its tries
            live.targets[0].attempts = sum(a.phase is Phase.PERFORM for a in attempts)
        undecided = run.trigger is Trigger.APPLY and run.plan is None
        checking = live.needs_check or (undecided and job.spec.check is not None)
        live.check_tries = sum(a.phase is Phase.CHECK for a in attempts) if checking else 0
        if undecided:
            live.basis = await _basis(store, run.origin)
        if run.state is RunState.ROLLING_BACK:
            since = run.undo_from or 0
            tries: dict[int, int] = {}
            for done in attempts:
                if done.phase is Phase.UNDO and done.n > since:
                    tries[done.target_idx] = tries.get(done.target_idx, 0) + 1
            live.undo_tries = tries
        resumed.append(live)
    if orphans:
        killed = kill_orphans(orphans)
        log.warning("recovery.orphans_killed", groups=killed, candidates=len(orphans))
    if closes:
        await store.commit(closes)
    for run in jobless:
        gone = RunError(kind=ErrorKind.FATAL, message=f"job {run.job!r} no longer exists")
        report.end_jobless(run, gone)
    err = RunError(kind=ErrorKind.INTERRUPTED, message=INTERRUPTED)
    for live in resumed:
        if live.trigger is Trigger.APPLY and live.plan is None and live.basis is None:
            gone = RunError(kind=ErrorKind.STALE, message="plan is stale: the preview is gone")
            report.end(live, RunEvent.STALE, error=gone)
            continue
        if live.needs_check and live.check_tries > live.spec.retries:
            report.end(live, RunEvent.FAIL, error=err)  # its check keeps taking the daemon down
            continue
        for t in live.targets:
            if t.state is TargetState.PENDING and t.attempts > live.spec.retries:
                t.state = next_target_state(t.state, TargetEvent.FAIL)
                t.error = err
                live.targets_failed += 1
                report.dead_letter(live, t, err)
        launcher.resume(live)
    log.info("recovery.resumed", runs=len(resumed), interrupted_attempts=len(closes))
    return len(resumed)


async def _basis(store: Store, preview_id: str | None) -> tuple[Plan, float, Any] | None:
    """An undecided apply's preview: its plan, when it was made and its check's output; None
    if it is gone."""
    found = await store.run(preview_id) if preview_id else None
    plan = plan_from_json(found.plan) if found is not None else None
    if found is None or plan is None:
        return None
    return plan, found.finished_at or found.created_at, found.result
