"""Rollback, inside the run's own task: ``undo`` for each succeeded target (SPEC §7.2).

Rollback continues the SAME run rather than making a new one: ``runs.rollback ID`` answers
that run, and its state is what tells an operator whether the change is still applied.

Rules:
- A ``partial`` or ``failed`` run goes ``rolling_back`` (a live state: a crash resumes it
  under its id, like any unfinished run); ``undo_from`` records how many attempts it had, so
  recovery counts only this rollback's undo tries.
- ``undo`` runs for each ``succeeded`` target in reverse target order, one target at a time
  (a later change is taken back before an earlier one), with the job's retries, backoff,
  service limits and worker slots: each undo attempt is durable before it starts, like any
  attempt (engine/attempt.py), so a crash leaves it ``interrupted`` and it counts as a try.
- An undone target becomes ``rolled_back``. One whose undo fails (after its retries) stays
  ``succeeded`` (it is still applied) and goes to the dead-letter queue with phase ``undo``.
- The run ends ``rolled_back`` when every target was undone (keeping the error that made it
  partial/failed), else ``failed`` with an error naming the targets not undone; rolling back
  again undoes just those.
- ``on_failure = "rollback"`` starts this by itself, in the same task, right after the run's
  end as ``partial``/``failed`` (its ``run.partial``/``run.failed`` event included). The end
  and the ``rolling_back`` row are submitted in the same loop turn, so they land in one
  transaction (store/writer.py rule 1; only a batch cut at its size limit parts them): a crash
  does not leave the run ended and its rollback forgotten.
"""

from __future__ import annotations

import structlog

from automationd.config.model import OnFailure
from automationd.core.runstate import (
    ROLLBACK_FROM,
    RunEvent,
    RunState,
    TargetEvent,
    TargetState,
    next_run_state,
    next_target_state,
)
from automationd.engine.attempt import AttemptTools, run_phase
from automationd.engine.live import LiveRun, LiveTarget
from automationd.engine.report import Report
from automationd.errors import ErrorKind
from automationd.records import Phase, RunError, Trigger
from automationd.store.rows import w_run, w_target

log = structlog.get_logger("automationd.engine")

_SHOWN = 10  # targets named in an incomplete rollback's message


def wants_rollback(live: LiveRun) -> bool:
    """``on_failure = "rollback"`` applies: the run ended partial/failed with something done."""
    spec = live.spec  # the definition the run follows (a pinned one if the job changed)
    return (
        spec.on_failure is OnFailure.ROLLBACK
        and spec.undo is not None
        and live.state in ROLLBACK_FROM
        and live.trigger is not Trigger.PREVIEW
        and any(x.state is TargetState.SUCCEEDED for x in live.targets)
    )


def begin(live: LiveRun) -> None:
    """The run goes ``rolling_back``: its row must be written before the first undo (the
    first undo attempt's durable start carries it, engine/attempt.py ``open_attempt``)."""
    live.state = next_run_state(live.state, RunEvent.ROLLBACK)
    live.finished_at = None
    live.undo_from = live.attempts
    live.undo_tries = None


async def roll_back(t: AttemptTools, report: Report, live: LiveRun) -> None:
    """Undo every succeeded target of ``live`` (already ``rolling_back``), then end it."""
    if live.state is not RunState.ROLLING_BACK:
        begin(live)
        t.store.post(live.riding([w_run(live)]))  # with the last attempt's end (attempt.py)
    elif live.resumed:
        live.state = next_run_state(live.state, RunEvent.RESUME)
    retries = live.spec.retries
    todo = [x for x in reversed(live.targets) if x.state is TargetState.SUCCEEDED]
    tried = live.undo_tries or {}
    log.info("run.rolling_back", run_id=live.id, job=live.job_name, targets=len(todo))
    failed: list[tuple[LiveTarget, RunError]] = []
    for x in todo:
        tries = tried.get(x.idx, 0)
        if tries > retries:  # its undo kept being cut short by crashes
            res: object = RunError(kind=ErrorKind.INTERRUPTED, message="undo interrupted")
        elif live.spec.undo is None:  # a reload took the job's undo away meanwhile
            res = RunError(kind=ErrorKind.FATAL, message="the job has no undo action any more")
        else:
            res = await run_phase(t, live, Phase.UNDO, x, tries=tries)
        if isinstance(res, RunError):
            failed.append((x, res))
            report.dead_letter(live, x, res, phase=Phase.UNDO)
            continue
        x.state = next_target_state(x.state, TargetEvent.ROLL_BACK)
        live.targets_succeeded -= 1
        live.targets_rolled_back += 1
        t.store.post(live.riding([w_run(live), w_target(x.snapshot(live.id))]))
    if not failed:
        report.end(
            live,
            RunEvent.ROLLED_BACK,
            error=live.error,
            reason=f"rolled back: {live.targets_rolled_back} target(s) undone",
        )
        return
    names = ", ".join(repr(x.value) for x, _ in failed[:_SHOWN])
    more = f" and {len(failed) - _SHOWN} more" if len(failed) > _SHOWN else ""
    first = failed[0][1]
    err = RunError(
        kind=first.kind,
        message=(
            f"rollback incomplete: {len(failed)} of {len(todo)} target(s) not undone "
            f"({names}{more}): {first.message}"
        ),
    )
    report.end(live, RunEvent.FAIL, error=err, reason="rollback incomplete")
