"""Crash recovery: runs found queued, running or retrying at start resume under the same id.

Rules (SPEC §4):
- finished targets are not redone; each unfinished one gets a new attempt;
- an attempt row without an outcome was interrupted by the crash: it is closed with kind
  ``interrupted`` and counts as a retryable failure (its target's attempt counter already
  includes it), so a target whose interrupted attempt was its last allowed one goes to the
  dead-letter queue — a crash loop ends there, not in an endless loop;
- exec children of the dead process are killed if they still run (matched by pgid and the
  run id in their environment);
- a run whose job no longer exists fails with a clear error.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from automationd.actions.exec import kill_orphans
from automationd.core.runstate import RunState, TargetState
from automationd.engine.dispatcher import Engine, LiveRun
from automationd.engine.ending import fail_target
from automationd.engine.jobs import JobTable
from automationd.errors import ErrorKind
from automationd.records import RunError
from automationd.store.db import Write
from automationd.store.runs import RunStore, lean_attempt, w_attempt, w_run

log = structlog.get_logger("automationd.recovery")

_CLOSE_ATTEMPT = (
    "UPDATE attempts SET finished_at=?, outcome='interrupted', error=? WHERE run_id=? AND n=?"
)
_INTERRUPTED = "the daemon stopped during this attempt"


async def recover(engine: Engine, jobs: JobTable, runs: RunStore) -> int:
    """Resume every live run; returns how many were resumed."""
    live_runs = await runs.live()
    if not live_runs:
        return 0
    now = engine.clock.time()
    orphans: list[tuple[int, str]] = []
    closes: list[Write] = []
    resumed: list[LiveRun] = []
    for run in live_runs:
        for a in await runs.open_attempts(run.id):
            closes.append(Write(_CLOSE_ATTEMPT, (now, _INTERRUPTED, run.id, a["n"])))
            if a["pgid"]:
                orphans.append((int(a["pgid"]), run.id))
        if run.attempts and not await runs.has_attempt(run.id, run.attempts):
            # a lean run's first attempt was in flight: it has no row of its own yet
            lost = lean_attempt(
                run, finished_at=now, outcome=ErrorKind.INTERRUPTED.value, error=_INTERRUPTED
            )
            closes.append(w_attempt(lost))
        targets = await runs.targets(run.id)
        job = jobs.get(run.job)
        if job is None:
            gone = RunError(kind=ErrorKind.FATAL, message=f"job {run.job!r} no longer exists")
            closes.append(w_run(replace(run, state=RunState.FAILED, finished_at=now, error=gone)))
            continue
        persist = bool(targets)
        if not targets and run.targets_total == 1:
            targets = [await runs.implicit_target(run)]
        resumed.append(LiveRun(run=run, job=job, target_list=targets, persist_targets=persist))
    if orphans:
        killed = kill_orphans(orphans)
        log.warning("recovery.orphans_killed", groups=killed, candidates=len(orphans))
    if closes:
        await engine.write(closes)
    err = RunError(kind=ErrorKind.INTERRUPTED, message=_INTERRUPTED)
    for live in resumed:
        for t in live.targets:
            if t.state is TargetState.PENDING and t.attempts > live.job.spec.retries:
                fail_target(engine, live, t, err)
        engine.resume(live)
    log.info("recovery.resumed", runs=len(resumed), interrupted_attempts=len(closes))
    return len(resumed)
