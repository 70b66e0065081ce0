"""Runs made ahead of their fire: a herd's runs are stored before they are due.

Why: when hundreds of jobs fire at the same instant (2,000 per-second jobs), making and
storing each run at its due time is work that delays every action of the herd. A scheduler
knows its fires ahead, so the scheduler hands a herd to this module ``LEAD`` seconds early:
each run is made (id, targets, its queued row) then, and at the due time only its first
attempt's start (and the job's counters) must be committed before its action is called.

Rules:
- A *herd* is at least ``HERD_MIN`` jobs whose next fire is at the same instant (no jitter;
  jitter spreads fires anyway). When the scheduler's next deadline is ``LEAD`` away, those
  jobs are taken off the timer wheel and *held* for that instant, each with its run made
  and stored as ``queued`` with the reason ``AHEAD`` (engine/launcher.py): the mark says the
  fire is not due yet. Jobs with ``max_runs`` (their count decides completion), one that is
  not enabled or that has an unfinished run are left on the wheel.
- Nothing starts early: at the due time the scheduler fires the held jobs as any other
  (overlap policy first; a skip ends the made run ``skipped``), and the run's first rows
  after that carry no mark. Only then is the run counted on its job and tracked as live.
- A held job that changes before its fire (paused, removed, redefined, re-placed by a
  reload, a clock jump or a stall's misfire handling) loses its made run: the row is
  deleted (``w_run_delete``, a barrier, so a run made again for the same fire comes after
  it) and the drop is logged. The job then fires as the scheduler decides, as if no run
  had been made.
- After a restart, a stored run that still carries the mark never started and was never
  counted: recovery deletes it (engine/recovery.py) before the scheduler places its job,
  so the misfire policy treats that fire exactly as it did before runs were made ahead.
- A fleet (PostgreSQL) makes no runs ahead: each fire there is its own claimable unit.
"""

from __future__ import annotations

import structlog

from automationd.core.runstate import RunState
from automationd.core.wheel import TimerWheel
from automationd.engine.jobs import JobRuntime, w_job_of
from automationd.engine.launcher import AHEAD, Launcher
from automationd.engine.live import LiveRun
from automationd.records import Run, Trigger
from automationd.store.ahead_rows import w_run_delete
from automationd.store.api import Store, Write
from automationd.store.rows import w_run

log = structlog.get_logger("automationd.scheduler")

LEAD = 0.5  # seconds before a herd's instant that its runs are made
HERD_MIN = 64  # fires at one instant that make a herd
UNIT = 256  # made runs per stored unit


class Ahead:
    """The herd held off the wheel for its instant, and the runs made for it."""

    def __init__(self, launcher: Launcher, store: Store) -> None:
        self._launcher = launcher
        self._store = store
        self.held: tuple[float, list[JobRuntime]] | None = None
        self._looked: float | None = None  # the last wheel deadline looked at

    def wake_at(self, deadline: float | None) -> float | None:
        """When the scheduler should wake next, given the wheel's next ``deadline``."""
        times = [] if self.held is None else [self.held[0]]
        if deadline is not None:
            times.append(deadline if deadline == self._looked else deadline - LEAD)
        return min(times) if times else None

    def look(self, wheel: TimerWheel[JobRuntime], now: float) -> None:
        """If the wheel's next instant is within ``LEAD`` and a herd, hold it: its jobs
        leave the wheel and their runs are made and stored (see the top)."""
        deadline = wheel.next_deadline()
        if self.held is not None or deadline is None or deadline == self._looked:
            return
        if deadline - now > LEAD:
            return
        self._looked = deadline
        if deadline <= now:
            return  # due already: the scheduler's next step fires it
        popped = wheel.pop_due(deadline)
        herd = [j for j in popped if _holdable(j, deadline)]
        if len(herd) < HERD_MIN:
            herd = []
        kept = {id(j) for j in herd}
        for job in popped:
            if id(job) in kept:
                job.wheel_handle = None
            else:
                job.wheel_handle = wheel.add(deadline, job)
        if herd:
            self.held = (deadline, herd)
            self._make(herd, deadline)

    def _make(self, herd: list[JobRuntime], due: float) -> None:
        writes: list[Write] = []
        for job in herd:
            live = self._launcher.prepare(
                job, trigger=Trigger.SCHEDULE, scheduled_for=due, ahead=True
            )
            job.ahead = live
            writes += (w_run(live), w_job_of(job))  # the row its count updates at the fire
            if len(writes) >= UNIT:
                self._store.post(writes)
                writes = []
        if writes:
            self._store.post(writes)

    def take_due(self, now: float) -> list[JobRuntime]:
        """The held jobs whose instant has come (those still held: see ``release``)."""
        held = self.held
        if held is None or held[0] > now:
            return []
        self.held = None
        return [j for j in held[1] if j.ahead is not None]

    def take(self, job: JobRuntime, due: float) -> LiveRun | None:
        """The run made ahead for ``job``'s fire at ``due``, handed over to that fire."""
        live: LiveRun | None = job.ahead
        if live is None or live.scheduled_for != due:
            return None
        job.ahead = None
        return live

    def release(self, job: JobRuntime, why: str) -> None:
        """``job`` leaves its herd before its fire (see the top): its made run is deleted."""
        live: LiveRun | None = job.ahead
        if live is None:
            return
        job.ahead = None
        try:
            self._store.post([w_run_delete(live.id)])
        except Exception as exc:  # the store is closing: recovery deletes it at next start
            log.warning("schedule.ahead_not_dropped", run_id=live.id, error=str(exc))
            return
        log.info("schedule.ahead_dropped", job=job.name, run_id=live.id, why=why)


def _holdable(job: JobRuntime, deadline: float) -> bool:
    return (
        job.enabled
        and job.wheel_due == deadline
        and not job.spec.max_runs
        and not job.live
        and job.ahead is None
    )


def made_ahead(run: Run) -> bool:
    """A stored run made ahead whose fire never came (it never started): see the top."""
    return run.state is RunState.QUEUED and run.reason == AHEAD and run.attempts == 0
