"""How a run ends: its end state, its dead-lettered targets, and the report once durable.

Rules:
- A run's end row and its ``run.<state>`` event row go out as ONE unit: after a crash both
  are on disk or neither (then recovery resumes the run and it ends again).
- The end is reported (metrics, the ``run.finished`` line, delivery of the event to its
  listeners) only once that unit is durable, from the write's settlement: nothing suspends,
  so a run's task ends in one step and an inline run needs no task at all. The ends of one
  loop turn share one writer entry (``Ends``).
- A failing report or delivery is logged; the run has ended either way.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from automationd.core.runstate import (
    RunEvent,
    RunState,
    TargetEvent,
    TargetState,
    next_run_state,
    next_target_state,
)
from automationd.records import DlqEntry, Run, RunError, Target
from automationd.store.db import Write
from automationd.store.runs import w_dlq, w_run, w_target

if TYPE_CHECKING:
    from automationd.engine.dispatcher import Engine
    from automationd.engine.jobs import JobRuntime
    from automationd.engine.liverun import LiveRun

log = structlog.get_logger("automationd.engine")


class Outcomes(Protocol):
    """Where ended runs are published (engine/eventbus.py)."""

    def outcome(self, run: Run) -> tuple[str, Write] | None:
        """The id and the row of the run's ``run.<state>`` event, if its end publishes one."""

    def deliver(self, run: Run, event_id: str) -> None:
        """That event is durable now: count it, and start its listeners' runs."""


class Ends:
    """The run ends of one loop turn, submitted as ONE unit with one callback for them all.

    Why: thousands of runs a second end inline, and a writer entry plus a callback each cost
    more than their rows. Group commit makes a batch all-or-nothing anyway, so grouping the
    ends of one turn changes nothing anyone could observe. ``Engine.settle`` submits twice,
    so ends still waiting for the turn's end are flushed before it returns.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writes: list[Write] = []
        self._ended: list[tuple[Run, JobRuntime, str | None, int]] = []

    def add(
        self,
        writes: list[Write],
        run: Run,
        job: JobRuntime,
        published: str | None,
        attempts_ok: int = 0,
    ) -> None:
        """Queue an end for this turn's unit; ``attempts_ok`` successful attempts not counted
        yet (the inline path's: counted with the group, once per job)."""
        if not self._ended:
            asyncio.get_running_loop().call_soon(self._flush)
        self._writes += writes
        self._ended.append((run, job, published, attempts_ok))

    def _flush(self) -> None:
        writes, ended = self._writes, self._ended
        self._writes, self._ended = [], []
        try:
            self._engine.db.submit_then(writes, partial(self._settled, ended))
        except Exception as exc:  # the store refused them (closing): they end again after
            # the next start, since recovery resumes runs whose end was never stored
            log.error("run.end_not_stored", runs=len(ended), error=str(exc))

    def _settled(
        self, ended: list[tuple[Run, JobRuntime, str | None, int]], exc: BaseException | None
    ) -> None:
        if exc is not None:
            return  # not stored: the failed batch was logged; nothing to report
        tally = _Tally()
        for run, job, published, attempts_ok in ended:
            try:
                tally.ok(job, attempts_ok)
                _report(self._engine, run, job, published, None, tally)
            except Exception:  # one bad report must not keep the others from being made
                log.exception("run.report_failed", run_id=run.id, job=job.name)
        tally.apply(self._engine)


class _Tally:
    """The metrics of a group of ended runs, applied once per job and state: a counter bumped
    by n costs what one bump costs (only the duration histogram takes every value)."""

    __slots__ = ("_jobs",)

    def __init__(self) -> None:
        self._jobs: dict[str, _JobTally] = {}

    def _of(self, job: JobRuntime) -> _JobTally:
        t = self._jobs.get(job.name)
        if t is None:
            t = self._jobs[job.name] = _JobTally(job)
        return t

    def ok(self, job: JobRuntime, attempts: int) -> None:
        if attempts:
            self._of(job).attempts_ok += attempts

    def add(self, job: JobRuntime, state: str, duration: float | None, now: float) -> None:
        t = self._of(job)
        t.states[state] = t.states.get(state, 0) + 1
        if duration is not None:
            t.durations.append(duration)
        if state == "succeeded":
            t.last_success = now

    def apply(self, engine: Engine) -> None:
        for t in self._jobs.values():
            meters = engine.meters(t.job)
            if t.attempts_ok:
                meters.attempt("ok", t.attempts_ok)
            meters.runs_ended(t.states, t.durations, t.last_success)


class _JobTally:
    __slots__ = ("attempts_ok", "durations", "job", "last_success", "states")

    def __init__(self, job: JobRuntime) -> None:
        self.job = job
        self.attempts_ok = 0
        self.states: dict[str, int] = {}
        self.durations: list[float] = []
        self.last_success: float | None = None


def end(
    engine: Engine,
    live: LiveRun,
    event: RunEvent,
    *,
    error: RunError | None = None,
    reason: str | None = None,
    result: Any = None,
) -> Run:
    """End the run; it is reported once its end (and its event) is durable."""
    run, writes, published = _ended(engine, live, event, error, reason, result)
    engine.ends.add(writes, run, live.job, published)
    return run


def end_at_once(engine: Engine, live: LiveRun, started_at: float, result: Any) -> Run:
    """The inline path's end (engine/inline.py): a queued run whose one implicit target
    succeeded on its first attempt goes queued → running → succeeded in one copy."""
    run = live.run
    state = next_run_state(next_run_state(run.state, RunEvent.START), RunEvent.SUCCEED)
    now = engine.clock.time()
    run = live.run = run.evolve(
        state=state,
        started_at=started_at,
        finished_at=now,
        attempts=run.attempts + 1,
        targets_succeeded=1,
        result=result,
    )
    live.job.last_success = now
    writes, published = _closing(engine, live, run)
    engine.ends.add(writes, run, live.job, published, attempts_ok=1)
    return run


async def finish(
    engine: Engine,
    live: LiveRun,
    event: RunEvent,
    *,
    error: RunError | None = None,
    reason: str | None = None,
    result: Any = None,
) -> Run:
    """``end`` for the rare paths that wait until the end is durable and reported."""
    run, writes, published = _ended(engine, live, event, error, reason, result)
    await engine.write(writes)
    _report(engine, run, live.job, published, None)
    return run


def _ended(
    engine: Engine,
    live: LiveRun,
    event: RunEvent,
    error: RunError | None,
    reason: str | None,
    result: Any,
) -> tuple[Run, list[Write], str | None]:
    now = engine.clock.time()
    ok = failed = 0
    for t in live.targets:
        if t.state is TargetState.SUCCEEDED:
            ok += 1
        elif t.state is TargetState.FAILED:
            failed += 1
    run = live.run = live.run.evolve(
        state=next_run_state(live.run.state, event),
        finished_at=now,
        targets_succeeded=ok,
        targets_failed=failed,
        error=error,
        reason=reason,
        result=result if result is not None else live.run.result,
    )
    if run.state is RunState.SUCCEEDED:
        live.job.last_success = now
    writes, published = _closing(engine, live, run)
    return run, writes, published


def _closing(engine: Engine, live: LiveRun, run: Run) -> tuple[list[Write], str | None]:
    """The rows that end ``run`` (its own and its event's); the job's row follows."""
    engine.touch(live.job)
    writes = [w_run(run)]
    published = None
    if engine.outcomes is not None:
        got = engine.outcomes.outcome(run)
        if got is not None:
            published, row = got
            writes.append(row)
    return writes, published


def _report(
    engine: Engine,
    run: Run,
    job: JobRuntime,
    published: str | None,
    exc: BaseException | None,
    tally: _Tally | None = None,
) -> None:
    if exc is not None:
        return  # not stored: the failed batch was logged; nothing to report
    now = run.finished_at or engine.clock.time()
    duration = now - run.started_at if run.started_at is not None else None
    if tally is None:
        engine.meters(job).run_ended(run.state.value, duration, now)
    else:
        tally.add(job, run.state.value, duration, now)
    if engine.log_runs:
        log.info(
            "run.finished",
            run_id=run.id,
            job=job.name,
            state=run.state.value,
            attempts=run.attempts,
            duration_s=round(duration or 0.0, 6),
        )
    if published is not None and engine.outcomes is not None:
        try:
            engine.outcomes.deliver(run, published)
        except Exception:  # the run has ended; a failing delivery must not change that
            log.exception("run.end_hook_failed", run_id=run.id, job=job.name)


def fail_target(engine: Engine, live: LiveRun, target: Target, err: RunError) -> None:
    """A target that exhausted its retries or failed fatally: mark it, dead-letter it."""
    now = engine.clock.time()
    target = target.evolve(state=next_target_state(target.state, TargetEvent.FAIL), error=err)
    live.targets[target.idx] = target
    entry = DlqEntry(
        id=engine.ids.new(now),
        run_id=live.run.id,
        job=live.job.name,
        target=target.target,
        target_idx=target.idx if live.persist_targets else -1,
        error=err,
        failed_at=now,
    )
    engine.dlq_size += 1
    engine.metrics.dlq_size.set(engine.dlq_size)
    writes = [w_dlq(entry)]
    if live.persist_targets:
        writes.append(w_target(target))
    engine.post(writes)
    log.warning(
        "target.dead_lettered",
        run_id=live.run.id,
        job=live.job.name,
        target=target.target,
        kind=err.kind.value,
        error=err.message,
    )
