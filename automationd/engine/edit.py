"""``jobs.update``: change a job in place, safely (issue 14).

Rules:
- The change is a JSON merge patch (core/patch.py) on the job's table as it stands: an API
  job's table as written, a config job's as the loader reads it (inherited values included).
  The merged table is validated exactly like ``jobs.add`` (``Catalog.parse``); a rename is
  refused.
- ``if_revision`` is a compare-and-set: the update is refused (``conflict``) when the job is
  not at that revision any more. Updates are serialised with every other job change
  (``Catalog.changing``), so two callers with the same revision cannot both pass, and a
  ``jobs.remove`` cannot slip in while an update's row is written.
- A config job is the file's: refused with "managed by FILE" unless ``override``; then the
  job is marked overridden, its table is kept in the jobs row, and reloads leave it alone
  until ``drop_override`` puts the file's definition back (and undoes a removal made with an
  override, engine/catalog.py).
- A real change bumps ``revision`` by one; a patch that changes nothing changes nothing.
- The new definition is in memory before the row is written, so every job row written
  meanwhile (a run's creation carries one) already has it; if the write fails the job is
  put back as it was and the caller hears ``unavailable``. It is placed on the scheduler
  again only if it is still the table's job (``Catalog.place``).
- A schedule change recomputes the next fire from now; runs in flight keep the definition
  they started with (``JobRuntime.redefine`` pins them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.config.model import JobSpec
from automationd.core.patch import changed_keys, merge_patch
from automationd.engine.catalog import Catalog
from automationd.engine.jobs import JobRuntime, job_row
from automationd.errors import StoreError, bad_request, conflict, not_found
from automationd.store.api import Store
from automationd.store.jobs import w_job_state

log = structlog.get_logger("automationd.catalog")


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """One ``jobs.update`` request, read and checked for shape by the admin command."""

    name: str
    patch: dict[str, Any] | None
    if_revision: int | None = None
    override: bool = False
    drop_override: bool = False


class Editor:
    def __init__(self, *, catalog: Catalog, store: Store, clock: Clock) -> None:
        self._catalog = catalog
        self._store = store

    async def update(self, u: Update) -> JobRuntime:
        async with self._catalog.changing:
            return await self._update(u)

    async def _update(self, u: Update) -> JobRuntime:
        cat = self._catalog
        if u.drop_override and u.name in cat.removed:
            return await self._restore(u)
        job = cat.get(u.name)
        if u.if_revision is not None and u.if_revision != job.revision:
            raise conflict(
                f"job {u.name!r} is at revision {job.revision}, not {u.if_revision}: "
                "someone changed it first; read it again"
            )
        is_config = job.spec.source == "config"
        if u.drop_override:
            spec = cat.file_spec(u.name) if job.override else None
            if spec is None:
                raise conflict(f"job {u.name!r} has no override to drop")
            return await self._apply(job, spec, override=False, keys=["override"])
        if is_config and not u.override:
            raise conflict(
                f"job {u.name!r} is managed by {cat.config.path}; edit it and reload "
                "(or give override: true)"
            )
        assert u.patch is not None
        if u.patch.get("name", u.name) != u.name:
            raise bad_request("args.patch.name: a job cannot be renamed (add a new one)")
        merged = merge_patch(dict(job.spec.raw), u.patch)
        spec = cat.parse(merged, source=job.spec.source)
        return await self._apply(job, spec, override=is_config, keys=changed_keys(u.patch))

    async def _apply(
        self, job: JobRuntime, spec: JobSpec, *, override: bool, keys: list[str]
    ) -> JobRuntime:
        if spec == job.spec and override == job.override:
            return job  # nothing changes: no new revision
        cat = self._catalog
        old = (job.spec, job.override, job.revision, job.gate)
        moved = spec.schedule != job.spec.schedule or spec.timezone != job.spec.timezone
        cat.scheduler.unplace(job)
        job.redefine(spec)
        job.override = override
        job.revision += 1
        job.gate = cat.services.get(spec.service)
        cat.jobs.put(job)
        try:
            await self._store.commit([w_job_state(job_row(job))])
        except StoreError:
            if cat.jobs.get(job.name) is job:
                job.redefine(old[0])
                job.override, job.revision, job.gate = old[1], old[2], old[3]
                cat.jobs.put(job)
                cat.place(job)
            raise
        cat.place(job)
        log.info(
            "job.updated",
            job=job.name,
            revision=job.revision,
            keys=keys,
            override=job.override,
            next_run=job.next_run if moved else None,
        )
        return job

    async def _restore(self, u: Update) -> JobRuntime:
        """Drop a removal override: the file's job is back, with the state it had."""
        cat = self._catalog
        spec = cat.file_spec(u.name)
        tomb = cat.removed.get(u.name)
        if spec is None or tomb is None:
            raise not_found(f"no job named {u.name!r}")
        job = cat.restore(spec, tomb)
        try:
            await self._store.commit([w_job_state(job_row(job))])
        except StoreError:
            if cat.jobs.get(u.name) is job:
                cat.jobs.remove(u.name)
                cat.removed[u.name] = tomb
            raise
        cat.place(job)
        log.info("job.restored", job=job.name, revision=job.revision)
        return job
