"""Previews and apply, inside a run's own task (SPEC §7.2; the rules of staleness are in
core/plan.py).

Rules:
- A ``preview`` run runs only its check phase (with the job's retries, like any check) and
  ends ``previewed`` with its plan stored on the run: the targets and payload perform would
  get, the job's definition identity, and their hash. A job without a check previews its
  static targets and the given payload. A check that says "nothing to perform" ends the
  preview ``skipped`` (its plan says so); a failing check ends it ``failed``. Nothing else
  runs, and a preview's targets are never stored as targets: it has none to perform.
- An ``apply`` run decides before anything is performed. The job's definition and the
  preview's age are compared first (a mismatch ends the run ``stale`` without running the
  check); then the check runs again with the preview's input payload and the plan it makes
  is compared with the preview's. Any difference ends the run ``stale`` (error kind
  ``stale``, a message naming each difference) with no perform attempt. A match stores the
  plan on the run and hands it the preview's targets and payload, exactly: perform then runs
  as for any run (engine/run.py).
- The decision is made once: a crash before it is made makes it again at the next start
  (the preview is read back); after it, the run resumes its targets like any other run.
- Whoever waits for an apply's decision (the admin answer) is told through ``live.decided``.
"""

from __future__ import annotations

from typing import Any

from automationd.actions.base import ActionResult
from automationd.config.table import job_table
from automationd.core.plan import Plan, digest, early_reasons, make_plan, plan_diff, stale_message
from automationd.core.runstate import RunEvent
from automationd.engine.attempt import AttemptTools, run_phase
from automationd.engine.jobs import JobRuntime
from automationd.engine.live import LiveRun, LiveTarget
from automationd.engine.report import Report
from automationd.errors import ErrorKind
from automationd.records import Phase, RunError
from automationd.store.rows import w_run, w_target


def definition_of(job: JobRuntime) -> str:
    """The job's definition identity, as a plan records it: its revision (issue 14: +1 on
    every change of its definition) and a digest of its table (every key in effect), so any
    edit, a reload that changes the job, or a remove and re-add count as a change (the digest
    stays: a removed and re-added job starts its revisions again)."""
    return f"r{job.revision}:{digest(job_table(job.spec))}"


async def preview(t: AttemptTools, report: Report, live: LiveRun) -> None:
    """A preview run's whole life: its check (if any), its plan, its end."""
    spec = live.job.spec
    definition = definition_of(live.job)
    if not live.needs_check:
        live.plan = make_plan(
            targets=spec.targets, payload=live.payload, definition=definition
        ).to_json()
        report.end(live, RunEvent.PREVIEW)
        return
    res = await run_phase(t, live, Phase.CHECK, None, tries=live.check_tries)
    if isinstance(res, RunError):
        report.end(live, RunEvent.FAIL, error=res)
        return
    live.needs_check = False
    live.plan = _checked_plan(live.job, res, live.payload, definition).to_json()
    if not res.perform:
        report.end(live, RunEvent.SKIP, reason="check: nothing to perform", result=res.value)
        return
    report.end(live, RunEvent.PREVIEW, result=res.value)


async def decide_apply(t: AttemptTools, report: Report, live: LiveRun) -> bool:
    """Compare the preview with now; True when perform may go on (see the rules)."""
    try:
        return await _decide(t, report, live)
    finally:
        tell_decided(live)


def tell_decided(live: LiveRun) -> None:
    fut = live.decided
    if fut is not None and not fut.done():
        fut.set_result(None)


async def _decide(t: AttemptTools, report: Report, live: LiveRun) -> bool:
    spec = live.job.spec
    assert live.basis is not None, "only an apply not decided yet decides"
    basis, made_at, before = live.basis
    definition = definition_of(live.job)
    early = early_reasons(basis, definition, made_at, t.clock.time(), spec.preview_ttl)
    if early:
        _stale(report, live, early)
        return False
    if spec.check is None:
        now = make_plan(targets=spec.targets, payload=basis.payload, definition=definition)
        value: Any = None
    else:
        res = await run_phase(t, live, Phase.CHECK, None, tries=live.check_tries)
        if isinstance(res, RunError):
            report.end(live, RunEvent.FAIL, error=res)
            return False
        now = _checked_plan(live.job, res, live.payload, definition)
        value = res.value
    reasons = plan_diff(basis, now, before, value)
    if reasons:
        live.plan = now.to_json()
        _stale(report, live, reasons)
        return False
    # It holds: perform gets exactly the previewed targets and payload.
    live.plan = basis.to_json()
    live.basis = None
    live.payload = basis.payload
    live.result = value
    values = list(basis.targets) if basis.targets is not None else [None]
    live.targets = [LiveTarget(i, v) for i, v in enumerate(values)]
    live.persist_targets = basis.targets is not None
    writes = live.riding([w_run(live)])  # the check attempt's end rides along (attempt.py)
    if live.persist_targets:
        writes.extend(w_target(x.snapshot(live.id)) for x in live.targets)
    t.store.post(writes)
    return True


def _checked_plan(job: JobRuntime, res: ActionResult, given: Any, definition: str) -> Plan:
    """The plan a check's result makes: its targets (or the job's) and payload (or the
    run's), as perform would get them (engine/run.py ``_apply_check``)."""
    targets = res.targets if res.targets is not None else job.spec.targets
    payload = res.payload if res.payload is not None else given
    return make_plan(
        targets=targets,
        payload=payload,
        definition=definition,
        perform=res.perform,
        output=res.value,
    )


def _stale(report: Report, live: LiveRun, reasons: list[str]) -> None:
    err = RunError(kind=ErrorKind.STALE, message=stale_message(reasons))
    report.end(live, RunEvent.STALE, error=err, reason="preview no longer holds; nothing performed")
