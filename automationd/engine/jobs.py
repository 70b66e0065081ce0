"""The live job table: each job's spec plus the state the daemon keeps about it.

A ``JobRuntime`` is mutable and owned by the engine (habit 10: mutable state only in its
owners). Actions are built lazily on a job's first run, so loading 100,000 jobs costs no
action objects; schedules are shared between jobs with the same (expression, zone). The
live-run map is made on first use too: most of 100,000 jobs are idle at any moment, and an
empty dict each would cost 6 MB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automationd.config.jobs import parsed_schedule
from automationd.config.model import JobSpec
from automationd.core.match import glob_match
from automationd.core.schedule import Schedule
from automationd.core.wheel import Handle
from automationd.obs.metrics import JobMetrics, Metrics
from automationd.store.jobs import JobRow, w_job, w_job_fields
from automationd.store.write import Write
from automationd.units import format_duration, rfc3339

_HEARD_CAP = 1024  # distinct event names cached by JobTable.listening

if TYPE_CHECKING:
    from automationd.actions.base import Action
    from automationd.engine.services import ServiceGate


@dataclass(slots=True, eq=False)
class JobRuntime:
    spec: JobSpec
    schedule: Schedule | None
    paused: bool = False
    completed: bool = False
    run_count: int = 0
    last_run: str | None = None
    last_success: float | None = None
    last_scheduled: float | None = None
    revision: int = 1  # +1 on every change of its definition (jobs.update, a reload)
    owner: int | None = None  # uid that added it over the socket (None: config, daemon, web)
    override: bool = False  # a config job changed over the socket; reloads leave it alone
    last_run_state: str | None = None  # how the latest run that ended ended (this life only)
    last_run_at: float | None = None  # when it ended
    next_run: float | None = None
    wheel_handle: Handle[JobRuntime] | None = None
    wheel_due: float | None = None
    live: dict[str, Any] | None = None  # run id → live run context; see ``active``
    actions: tuple[Action, Action | None, Action | None, Action | None] | None = None
    gate: ServiceGate | None = None
    log: Any = None  # a concrete bound logger, made on the job's first run
    meters: JobMetrics | None = None  # its metric children: ``meters_on``, made on first use
    ahead: Any = None  # its next fire's run, made ahead while held off the wheel (engine/ahead.py)

    @property
    def name(self) -> str:
        return self.spec.name

    def meters_on(self, metrics: Metrics) -> JobMetrics:
        """The job's metric children (the one place they are made: on first use, not for
        each of 100,000 idle jobs)."""
        meters = self.meters
        if meters is None:
            meters = self.meters = JobMetrics(metrics, self.name)
        return meters

    @property
    def active(self) -> dict[str, Any]:
        """Run id → live run context, made on first use (see the module docstring)."""
        live = self.live
        if live is None:
            live = self.live = {}
        return live

    @property
    def state(self) -> str:
        if self.completed:
            return "completed"
        return "paused" if self.paused else "enabled"

    @property
    def enabled(self) -> bool:
        return not self.paused and not self.completed

    def redefine(self, spec: JobSpec) -> None:
        """Take a new definition. Runs in flight keep the one they started with: each is
        pinned to the old spec (and its built actions) before the job moves on."""
        if self.live:
            for lv in self.live.values():
                lv.pin(self.spec, self.actions)
        self.spec = spec
        self.schedule = schedule_for(spec)
        self.actions = None

    # The job's counters change only through these (one owner: the job itself).
    def count_run(self, run_id: str, *, counted: bool = True) -> None:
        """A run of this job was made (``counted`` False: a skipped fire's record)."""
        if counted:
            self.run_count += 1
        self.last_run = run_id

    def note_end(self, state: str, at: float) -> None:
        self.last_run_state = state
        self.last_run_at = at
        if state == "succeeded":
            self.last_success = at

    def note_fire(self, due: float) -> None:
        self.last_scheduled = max(due, self.last_scheduled or due)

    def to_json(self) -> dict[str, Any]:
        s = self.spec
        return {
            "name": s.name,
            "description": s.description,
            "schedule": s.schedule,
            "on": s.on,
            "when": dict(s.when),
            "state": self.state,
            "source": s.source,
            "next_run": rfc3339(self.next_run) if self.enabled else None,
            "last_run": self.last_run,
            "last_run_state": self.last_run_state,
            "last_run_at": rfc3339(self.last_run_at),
            "last_success": rfc3339(self.last_success),
            "run_count": self.run_count,
            "service": s.service,
            "timezone": s.timezone,
            "priority": s.priority,
            "max_runs": s.max_runs,
            "retries": s.retries,
            "timeout": format_duration(s.timeout),
            "overlap": s.overlap.value,
            "misfire": s.misfire.value,
            "action": s.action.type,
            "running": len(self.live) if self.live else 0,
            "revision": self.revision,
            "owner": self.owner,
            "override": self.override,
        }


def schedule_for(spec: JobSpec) -> Schedule | None:
    if spec.schedule is None:
        return None
    return parsed_schedule(spec.schedule, spec.timezone)


def next_fires(schedule: Schedule, now: float, count: int = 5) -> list[tuple[float, str | None]]:
    """The next ``count`` fires after ``now`` with their DST note (``dst-gap``/``dst-fold``),
    for previews (``jobs show``); ``now`` is a parameter so previews are testable."""
    out: list[tuple[float, str | None]] = []
    t: float | None = now
    while len(out) < count and t is not None:
        t = schedule.next_after(t)
        if t is not None:
            out.append((t, schedule.dst_note(t)))
    return out


class JobTable:
    """Jobs by name, plus the subset that listens for events (so publish never scans all)."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRuntime] = {}
        self.listeners: dict[str, JobRuntime] = {}
        self._heard: dict[str, list[JobRuntime]] = {}  # event name → listeners whose glob matches
        self.version = 0  # +1 whenever a job is put or removed (readers cache by it)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[JobRuntime]:
        return iter(self._jobs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def get(self, name: str) -> JobRuntime | None:
        return self._jobs.get(name)

    def listening(self, name: str) -> list[JobRuntime]:
        """Listeners whose ``on`` glob matches event ``name`` (``when`` is the caller's part).

        Cached per name until the table changes: nearly every event is one of a few names
        (``run.succeeded`` after every run), and a glob per listener per event adds up.
        """
        hit = self._heard.get(name)
        if hit is None:
            if len(self._heard) >= _HEARD_CAP:
                self._heard.clear()
            hit = self._heard[name] = [
                j for j in self.listeners.values() if glob_match(j.spec.on or "", name)
            ]
        return hit

    def put(self, job: JobRuntime) -> None:
        self.version += 1
        self._heard.clear()
        self._jobs[job.name] = job
        if job.spec.on is not None:
            self.listeners[job.name] = job
        else:
            self.listeners.pop(job.name, None)

    def remove(self, name: str) -> JobRuntime | None:
        self.version += 1
        self._heard.clear()
        self.listeners.pop(name, None)
        return self._jobs.pop(name, None)

    def counts(self) -> dict[str, int]:
        # Plain attribute tests, not the ``state`` property: `status` asks this, and at
        # 100,000 jobs the property's call per job cost 15 ms (issue 13's overview page).
        paused = completed = 0
        for j in self._jobs.values():
            if j.completed:
                completed += 1
            elif j.paused:
                paused += 1
        return {
            "enabled": len(self._jobs) - paused - completed,
            "paused": paused,
            "completed": completed,
        }

    def names(self) -> list[str]:
        """Every job's name, in table order."""
        return list(self._jobs)


def job_row(job: JobRuntime) -> JobRow:
    """The job's durable row. An API job keeps its spec as written; when that is still the
    JSON text it was loaded from, it is written back as is (no re-encoding per counter write)."""
    spec = job.spec
    keep = spec.source == "api" or job.override  # an overriding table is kept like an API job's
    written = spec.written if keep else None
    return JobRow(
        name=job.name,
        source=spec.source,
        spec=dict(spec.raw) if keep and not isinstance(written, str) else None,
        spec_json=written if isinstance(written, str) else None,
        paused=job.paused,
        completed=job.completed,
        last_scheduled=job.last_scheduled,
        run_count=job.run_count,
        last_run=job.last_run,
        last_success=job.last_success,
        revision=job.revision,
        owner=job.owner,
        override=job.override,
    )


def w_job_of(job: JobRuntime) -> Write:
    """The job's row as a write: it rides in the same unit as whatever changed its counters
    (a run's creation, its end), and the writer keeps one per job per batch. A config job's
    (no spec to store) is built from its parts, without a ``JobRow``."""
    spec = job.spec
    if spec.source == "api" or job.override:
        return w_job(job_row(job))
    return w_job_fields(
        spec.name,
        spec.source,
        None,
        job.paused,
        job.completed,
        job.last_scheduled,
        job.run_count,
        job.last_run,
        job.last_success,
        job.revision,
        job.owner,
        job.override,
    )
