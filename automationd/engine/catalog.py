"""The job catalog: builds live jobs from config and API specs and changes them at run time.

Config jobs come from the file and are reconciled on reload; API jobs (``jobs.add``) are stored
with their full spec and survive restarts and reloads. Pause, completion, counters and the last
scheduled fire live in the jobs table for both, so a pause survives restarts and reloads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from automationd.config.load import parse_job
from automationd.config.model import Config, JobSpec
from automationd.core.reconcile import diff_jobs
from automationd.engine.dispatcher import Engine, job_row
from automationd.engine.jobs import JobRuntime, JobTable, schedule_for
from automationd.engine.scheduler import MARK, Scheduler
from automationd.errors import ConfigError, bad_request, conflict, not_found
from automationd.store.jobs import JobRow, w_job, w_job_delete

log = structlog.get_logger("automationd.catalog")


class Catalog:
    def __init__(
        self, *, config: Config, jobs: JobTable, engine: Engine, scheduler: Scheduler,
        services: Any,
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.engine = engine
        self.scheduler = scheduler
        self.services = services

    # ------------------------------------------------------------ start-up
    def load(self, rows: dict[str, JobRow]) -> None:
        """Config jobs, then API jobs from the store; each picks up its persisted state."""
        mark = rows.get(MARK)
        if mark is not None:
            self.scheduler.baseline = mark.last_scheduled
        for spec in self.config.jobs:
            self._put(spec, rows.get(spec.name))
        for row in rows.values():
            if row.source != "api" or row.name in self.jobs or row.spec is None:
                continue
            try:
                spec = self._parse_api(row.spec)
            except ConfigError as exc:
                log.error("job.load_failed", job=row.name, error=str(exc))
                continue
            self._put(spec, row)
        self._refresh_gauges()

    def _put(self, spec: JobSpec, row: JobRow | None) -> JobRuntime:
        job = JobRuntime(spec=spec, schedule=schedule_for(spec))
        if row is not None:
            job.paused = row.paused
            job.completed = row.completed
            job.run_count = row.run_count
            job.last_run = row.last_run
            job.last_success = row.last_success
            job.last_scheduled = row.last_scheduled
        job.gate = self.services.get(spec.service)
        self.jobs.put(job)
        return job

    def _parse_api(self, raw: dict[str, Any]) -> JobSpec:
        cfg = self.config
        return parse_job(
            raw, where="job", defaults=cfg.defaults, services=cfg.services,
            base_dir=cfg.path.parent, default_tz=cfg.daemon.timezone, source="api",
        )

    # ------------------------------------------------------------ admin operations
    def get(self, name: str) -> JobRuntime:
        job = self.jobs.get(name)
        if job is None:
            raise not_found(f"no job named {name!r}")
        return job

    async def add(self, raw: Any) -> JobRuntime:
        if not isinstance(raw, dict):
            raise bad_request("job: expected an object with the keys of a [[jobs]] table")
        try:
            spec = self._parse_api(raw)
        except ConfigError as exc:
            raise bad_request(str(exc)) from None
        if spec.name in self.jobs:
            raise conflict(f"a job named {spec.name!r} already exists")
        job = self._put(spec, None)
        await self.engine.write([w_job(job_row(job))])
        self.scheduler.place(job, self.engine.clock.time())
        self.scheduler.wake()
        self._refresh_gauges()
        log.info("job.added", job=spec.name, source="api")
        return job

    async def remove(self, name: str) -> JobRuntime:
        job = self.get(name)
        self.scheduler.unplace(job)
        self.jobs.remove(name)
        await self.engine.write([w_job_delete(name)])
        self._refresh_gauges()
        log.info("job.removed", job=name)
        return job

    async def set_paused(self, name: str, paused: bool) -> JobRuntime:
        job = self.get(name)
        job.paused = paused
        await self.engine.write([w_job(job_row(job))])
        if paused:
            self.scheduler.unplace(job)
        else:
            self.scheduler.place(job, self.engine.clock.time())
            self.scheduler.wake()
        self._refresh_gauges()
        log.info("job.paused" if paused else "job.resumed", job=name)
        return job

    async def reload(self, new: Config) -> dict[str, int]:
        """Apply a new config: reconcile config jobs, keep API jobs and every pause."""
        old_specs = {j.name: j.spec for j in self.jobs if j.spec.source == "config"}
        new_specs = {s.name: s for s in new.jobs}
        d = diff_jobs(old_specs, new_specs)
        self.config = new
        self.services.reconfigure(new.services)
        now = self.engine.clock.time()
        for name in d.removed:
            job = self.jobs.remove(name)
            if job is not None:
                self.scheduler.unplace(job)
        for name in d.added:
            existing = self.jobs.get(name)
            row = job_row(existing) if existing is not None else None
            if existing is not None:
                self.scheduler.unplace(existing)
                row = replace(row, source="config", spec=None) if row else None
            job = self._put(new_specs[name], row)
            self.scheduler.place(job, now)
        for name in d.updated:
            job = self.jobs.get(name)
            if job is None:
                continue
            self.scheduler.unplace(job)
            job.spec = new_specs[name]
            job.schedule = schedule_for(job.spec)
            job.actions = None
            job.gate = self.services.get(job.spec.service)
            self.jobs.put(job)
            self.scheduler.place(job, now)
        for job in self.jobs:  # services may have been re-created
            job.gate = self.services.get(job.spec.service)
        self.scheduler.wake()
        self._refresh_gauges()
        return {
            "jobs_added": len(d.added),
            "jobs_updated": len(d.updated),
            "jobs_removed": len(d.removed),
        }

    def _refresh_gauges(self) -> None:
        for state, n in self.jobs.counts().items():
            self.engine.metrics.jobs.labels(state).set(n)
