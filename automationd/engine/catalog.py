"""The job catalog: builds live jobs from config and API specs and changes them at run time.

Config jobs come from the file and are reconciled on reload; API jobs (``jobs.add``) are stored
with their full spec and survive restarts and reloads. Pause, completion, counters and the last
scheduled fire live in the jobs table for both, so a pause survives restarts and reloads.

Changes over the socket (issue 14): every job carries a ``revision`` (+1 on every change of its
definition), an ``owner`` (the uid that added it) and, for config jobs, an ``override`` flag.
An overridden config job keeps its socket-made table in the jobs row; reloads leave it alone
until the override is dropped (engine/edit.py). A config job removed with an override leaves
a tombstone row (override set, no spec) that keeps it out across reloads and restarts.

Run-time changes (add, remove, pause/resume, engine/edit.py's update, reload) take turns under
``changing``; after awaiting its row a change places the job only if it is still the table's
(``adopt`` may replace it), and puts memory back if the row failed. Pause, remove and update
change memory first, so a run's counter row written meanwhile carries the change, not the old
state; an added job enters the table once its row is stored.

Start-up with 100,000 jobs (issue 4: READY ≤ 3 s): stored API specs are decoded in one JSON
call and validated again (the config of the day may have lost their service), with equal
values shared between jobs; the cyclic GC is paused meanwhile, as in ``load_config``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.config.load import gc_paused, parse_job
from automationd.config.model import Config, JobSpec
from automationd.config.shared import Shared
from automationd.core.reconcile import diff_jobs
from automationd.engine.jobs import JobRuntime, JobTable, job_row, schedule_for
from automationd.engine.scheduler import MARK, Scheduler
from automationd.errors import ConfigError, StoreError, bad_request, conflict, not_found
from automationd.obs.metrics import Metrics
from automationd.store.api import Store
from automationd.store.jobs import ApiSpec, JobRow, StoredJobs, w_job_delete, w_job_state

log = structlog.get_logger("automationd.catalog")
_BATCH = 2000  # stored API jobs decoded at once: fast, yet a small peak of parser output


class Catalog:
    def __init__(
        self,
        *,
        config: Config,
        jobs: JobTable,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        scheduler: Scheduler,
        services: Any,
    ) -> None:
        self.config = config
        self.jobs = jobs
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self.scheduler = scheduler
        self.services = services
        self._base_of: Config | None = None  # the config whose folder is _base_dir
        self._base_dir = config.path.parent
        self.removed: dict[str, JobRow] = {}  # config jobs removed with an override: tombstones
        self.changing = asyncio.Lock()  # one job change at a time (module docstring)

    # ------------------------------------------------------------ start-up
    def load(self, rows: StoredJobs) -> None:
        """Config jobs, then API jobs from the store; each picks up its persisted state."""
        mark = rows.get(MARK)
        if mark is not None:
            self.scheduler.baseline = mark.last_scheduled
        with gc_paused():
            for spec in self.config.jobs:
                row = rows.get(spec.name)
                if row is not None and row.override:
                    if row.spec_json is None:
                        self.removed[spec.name] = row
                        continue
                    spec = self._overriding(spec, row.spec_json)
                    if spec.written is None:  # the override no longer validates: dropped
                        row = replace(row, override=False)
                self._put(spec, row)
            api = [a for a in rows.take_api_specs() if a.name not in self.jobs]
            shared = Shared()
            for i in range(0, len(api), _BATCH):
                self._load_api(api[i : i + _BATCH], rows, shared)
        self._refresh_gauges()

    def _overriding(self, spec: JobSpec, text: str) -> JobSpec:
        """A config job's stored override, validated again; the file's spec if it fails."""
        try:
            raw = _decode(text)
            if not isinstance(raw, dict) or raw.get("name") != spec.name:
                raise ConfigError("job: stored override is not this job's table")
            return self._parse_api(raw, written=text, source="config")
        except ConfigError as exc:
            log.error("job.override_dropped", job=spec.name, error=str(exc))
            return spec

    def _load_api(self, batch: list[ApiSpec], rows: StoredJobs, shared: Shared) -> None:
        """One batch of stored API jobs: decoded together, validated one by one against
        today's config (a job whose service is gone is logged and left out)."""
        for (name, text, has_state, revision, owner), raw in zip(
            batch, _decode_all([a.text for a in batch]), strict=True
        ):
            try:
                if not isinstance(raw, dict):
                    raise ConfigError("job: stored spec is not a JSON object")
                if raw.get("name") != name:
                    raise ConfigError(f"job.name: stored spec names {raw.get('name')!r}")
                raw["name"] = name  # the row's copy: the decoded one goes with the batch
                spec = self._parse_api(raw, written=text, shared=shared)
            except ConfigError as exc:
                log.error("job.load_failed", job=name, error=str(exc))
                continue
            job = self._put(spec, rows.get(name) if has_state else None)
            job.revision = revision
            job.owner = owner

    def _put(self, spec: JobSpec, row: JobRow | None) -> JobRuntime:
        job = self._make(spec, row)
        self.jobs.put(job)
        return job

    def _make(self, spec: JobSpec, row: JobRow | None) -> JobRuntime:
        job = JobRuntime(spec=spec, schedule=schedule_for(spec))
        if row is not None:
            job.paused = row.paused
            job.completed = row.completed
            job.run_count = row.run_count
            job.last_run = row.last_run
            job.last_success = row.last_success
            job.last_scheduled = row.last_scheduled
            job.revision = row.revision
            job.owner = row.owner
            job.override = row.override
            if row.last_success is not None:  # the dead-man's switch survives restarts
                self._metrics.last_succeeded(spec.name, row.last_success)
        job.gate = self.services.get(spec.service)
        return job

    def _parse_api(
        self,
        raw: Any,
        *,
        written: Any = None,
        shared: Shared | None = None,
        source: str = "api",
    ) -> JobSpec:
        cfg = self.config
        if self._base_of is not cfg:
            self._base_of, self._base_dir = cfg, cfg.path.parent
        return parse_job(
            raw,
            where="job",
            defaults=cfg.defaults,
            services=cfg.services,
            base_dir=self._base_dir,
            default_tz=cfg.daemon.timezone,
            source=source,
            written=raw if written is None else written,
            shared=shared,
        )

    # ------------------------------------------------------------ admin operations
    def get(self, name: str) -> JobRuntime:
        job = self.jobs.get(name)
        if job is None:
            raise not_found(f"no job named {name!r}")
        return job

    def file_spec(self, name: str) -> JobSpec | None:
        """The job as the config file of the day declares it (None: not a config job)."""
        for spec in self.config.jobs:
            if spec.name == name:
                return spec
        return None

    def parse(self, raw: Any, *, source: str) -> JobSpec:
        """Validate a job table exactly as ``jobs.add`` does; ``bad_request`` if it fails.
        The job keeps its table as compact JSON text: what its row stores, written as is by
        every counter write (``job_row``), not encoded again each time."""
        if not isinstance(raw, dict):
            raise bad_request("job: expected an object with the keys of a [[jobs]] table")
        try:
            spec = self._parse_api(raw, source=source)
        except ConfigError as exc:
            raise bad_request(str(exc)) from None
        return replace(spec, written=json.dumps(raw, separators=(",", ":")))

    async def add(self, raw: Any, owner: int | None = None) -> JobRuntime:
        spec = self.parse(raw, source="api")
        async with self.changing:
            if spec.name in self.jobs or spec.name in self.removed:
                raise conflict(f"a job named {spec.name!r} already exists")
            job = self._make(spec, None)
            job.owner = owner
            await self._store.commit([w_job_state(job_row(job))])
            self.jobs.put(job)
            self.place(job)
        self._refresh_gauges()
        log.info("job.added", job=spec.name, source="api")
        return job

    async def remove(self, name: str, *, override: bool = False) -> JobRuntime:
        """Remove an API job; a config job only with ``override`` (a tombstone keeps it out
        across reloads until ``jobs edit NAME --drop-override`` brings the file's back)."""
        async with self.changing:
            job = self.get(name)
            if job.spec.source == "config" and not override:
                raise conflict(
                    f"job {name!r} is managed by {self.config.path}; remove it there and reload"
                    " (or give override: true)"
                )
            self.scheduler.unplace(job)
            self.jobs.remove(name)
            write = w_job_delete(name)
            if job.spec.source == "config":
                row = replace(job_row(job), spec=None, spec_json=None, override=True)
                self.removed[name] = row = replace(row, revision=row.revision + 1)
                write = w_job_state(row)
            try:
                await self._store.commit([write])
            except StoreError:  # still stored: still here
                self.removed.pop(name, None)
                if name not in self.jobs:
                    self.jobs.put(job)
                    self.place(job)
                raise
            self._metrics.forget_job(name)
        self._refresh_gauges()
        log.info("job.removed", job=name)
        return job

    def restore(self, spec: JobSpec, tomb: JobRow) -> JobRuntime:
        """Bring back a config job removed with an override (its tombstone's state kept)."""
        del self.removed[spec.name]
        job = self._put(spec, replace(tomb, override=False, revision=tomb.revision + 1))
        self._refresh_gauges()
        return job

    async def set_paused(self, name: str, paused: bool) -> JobRuntime:
        async with self.changing:
            job = self.get(name)
            was = job.paused
            job.paused = paused
            if paused:
                self.scheduler.unplace(job)  # no fire while the row is on its way
            try:
                await self._store.commit([w_job_state(job_row(job))])
            except StoreError:
                job.paused = was
                raise
            finally:
                self.place(job)  # placed if enabled (and still this table's job)
        self._refresh_gauges()
        log.info("job.paused" if paused else "job.resumed", job=name)
        return job

    async def reload(self, new: Config) -> dict[str, int]:
        """Apply a new config: reconcile config jobs, keep API jobs, every pause, and every
        override (an overridden or removed-with-override job is not the file's to change)."""
        async with self.changing:
            return self._reload(new)

    def _reload(self, new: Config) -> dict[str, int]:
        old_specs = {s.name: s for s in self.config.jobs}
        new_specs = {s.name: s for s in new.jobs}
        d = diff_jobs(old_specs, new_specs)
        self.config = new
        self.services.reconfigure(new.services)
        now = self._clock.time()
        rows: list[JobRow] = []
        for name in d.removed:
            tomb = self.removed.pop(name, None)
            if tomb is not None:  # gone from the file: nothing left to keep out
                rows.append(replace(tomb, override=False))
            job = self.jobs.remove(name)
            if job is not None:
                self.scheduler.unplace(job)
                self._metrics.forget_job(name)
                if job.override:
                    rows.append(replace(job_row(job), override=False, spec=None, spec_json=None))
        for name in d.added:
            existing = self.jobs.get(name)
            row = None
            if existing is not None:
                self.scheduler.unplace(existing)
                row = replace(
                    job_row(existing),
                    source="config",
                    spec=None,
                    spec_json=None,
                    owner=None,
                    override=False,
                    revision=existing.revision + 1,
                )
            job = self._put(new_specs[name], row)
            self.scheduler.place(job, now)
        updated = 0
        for name in d.updated:
            job = self.jobs.get(name)
            if job is None or job.override:
                continue
            updated += 1
            self.scheduler.unplace(job)
            job.redefine(new_specs[name])
            job.revision += 1
            job.gate = self.services.get(job.spec.service)
            self.jobs.put(job)
            self.scheduler.place(job, now)
            rows.append(job_row(job))
        if rows:
            self._store.post([w_job_state(r) for r in rows])
        for job in self.jobs:  # services may have been re-created
            job.gate = self.services.get(job.spec.service)
        self.scheduler.wake()
        self._refresh_gauges()
        return {
            "jobs_added": len(d.added),
            "jobs_updated": updated,
            "jobs_removed": len(d.removed),
        }

    def place(self, job: JobRuntime) -> None:
        """(Re)place ``job`` on the scheduler, if it is still the table's job: a change that
        awaited its row may find it removed or replaced meanwhile."""
        if self.jobs.get(job.name) is job:
            self.scheduler.place(job, self._clock.time())
            self.scheduler.wake()

    def adopt(self, name: str, row: Any) -> None:
        """A job changed on another daemon of the fleet (engine/crew.py): its stored row
        (``JOB_COLUMNS`` order, or None when deleted) is the truth. API jobs appear,
        change and go; every job takes its pause and completion."""
        job = self.jobs.get(name)
        if row is None:
            if job is not None and job.spec.source == "api":
                self.scheduler.unplace(job)
                self.jobs.remove(name)
                self._refresh_gauges()
                log.info("job.removed", job=name, elsewhere=True)
            return
        stored = StoredJobs([row]).get(name)
        if stored is None:
            return
        text = stored.spec_json
        try:
            raw = json.loads(text) if stored.source == "api" and text is not None else None
            changed = raw is not None and (
                job is None or (job.spec.source == "api" and raw != dict(job.spec.raw))
            )
            if changed:
                spec = self._parse_api(raw, written=text)
        except (ConfigError, ValueError) as exc:
            log.error("job.adopt_failed", job=name, error=str(exc))
            return
        if changed:
            if job is not None:
                self.scheduler.unplace(job)
            job = self._put(spec, stored)
            log.info("job.adopted", job=name)
        if job is None:
            return
        job.paused, job.completed = stored.paused, stored.completed
        self.scheduler.place(job, self._clock.time())
        self.scheduler.wake()
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        for state, n in self.jobs.counts().items():
            self._metrics.jobs.labels(state).set(n)


def _decode_all(texts: list[str]) -> list[Any]:
    """Decode stored specs with one ``json.loads`` (a third of the time of one call each);
    if any is corrupt, decode one by one so only that one fails (as a ``ConfigError``)."""
    try:
        decoded: list[Any] = json.loads("[" + ",".join(texts) + "]")
        if len(decoded) == len(texts):
            return decoded
    except ValueError:
        pass
    return [_decode(t) for t in texts]


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None  # not a table: the caller logs it and skips the job
