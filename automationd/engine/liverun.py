"""A run while it is alive in memory, and the job rows its changes dirty.

``LiveRun`` is mutated only by its run's task. ``JobRows`` coalesces job-row writes: a job's
counters (run count, last run, last success) change with every run, but one row per job per
batch is enough, so many runs of one job in a batch cost one write, not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from automationd.engine.jobs import JobRuntime
from automationd.records import Run, Target
from automationd.store.db import Write
from automationd.store.jobs import JobRow, w_job

if TYPE_CHECKING:
    from automationd.engine.attempts import Begun


@dataclass(slots=True, eq=False)
class LiveRun:
    """A run in memory while its task lives; mutated only by that task."""

    run: Run
    job: JobRuntime
    # None: the one implicit target, its record made on first use (an inline run never needs
    # it). A job with a check phase starts with [] until the check decides.
    target_list: list[Target] | None
    persist_targets: bool = True
    skip_check: bool = False
    after: tuple[asyncio.Future[None], ...] = ()  # previous runs' `done` (overlap: queue)
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    executing: int = 0
    resumed: bool = False
    lean: bool = False  # one plain action (no check/verify/exec): see attempts.py
    done: asyncio.Future[None] | None = None  # made on demand by ``ended()``
    begun: Begun | None = None  # an attempt the inline path hands to this run's task
    gone: bool = False  # the run has left memory
    started: bool = False  # its task has taken its first step

    @property
    def targets(self) -> list[Target]:
        found = self.target_list
        if found is None:
            found = self.target_list = [Target(run_id=self.run.id, idx=0, target=None)]
        return found

    @targets.setter
    def targets(self, value: list[Target]) -> None:
        self.target_list = value

    def ended(self) -> asyncio.Future[None]:
        """Resolves when the run leaves memory (what a queued fire waits for). Made on
        demand: most runs are never waited for, and a future each would be pure cost."""
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
            if self.gone:
                self.done.set_result(None)
        return self.done


def job_row(job: JobRuntime) -> JobRow:
    """The job's durable row. An API job keeps its spec as written; when that is still the
    JSON text it was loaded from, it is written back as is (no re-encoding per counter write)."""
    spec = job.spec
    api = spec.source == "api"
    written = spec.written if api else None
    return JobRow(
        name=job.name,
        source=spec.source,
        spec=dict(spec.raw) if api and not isinstance(written, str) else None,
        spec_json=written if isinstance(written, str) else None,
        paused=job.paused,
        completed=job.completed,
        last_scheduled=job.last_scheduled,
        run_count=job.run_count,
        last_run=job.last_run,
        last_success=job.last_success,
    )


class JobRows:
    """Dirty job rows, flushed (posted) once per loop turn, so once per writer batch."""

    def __init__(self, post: Callable[[Sequence[Write]], None]) -> None:
        self._post = post
        self._dirty: dict[str, JobRuntime] = {}

    def touch(self, job: JobRuntime) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty[job.name] = job

    def _flush(self) -> None:
        jobs, self._dirty = self._dirty, {}
        self._post([w_job(job_row(j)) for j in jobs.values()])
