"""``jobs.backfill``: one run per past fire of a job in a window, each fire at most once.

Rules:
- The fires are the schedule's in [since, until) (core/backfill.py), up to now and before the
  job's pending fire (that one, and later ones, are the scheduler's). A window with more than
  ``MAX_FIRES`` fires is refused, not cut short.
- One run per (job, fire time), whoever made it: a fire that already has a run (a scheduled
  or misfire run with that ``scheduled_for``, an earlier backfill's, or one still in memory)
  is left out. Backfills are serialised, and each starts by waiting until everything
  submitted before it is durable, so what it reads is complete.
- The store holds one run per (job, fire time) for schedule, misfire and backfill runs (a
  unique key on the run's job and ``scheduled_for``, on every backend): a second backfill
  racing this one on another daemon of a fleet is refused whole, never doubled.
- Runs are created in fire order (their ids sort the same way), with trigger ``backfill`` and
  ``scheduled_for`` set, and go through the normal worker pool and service limits; the
  overlap policy does not apply (they were asked for).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.core.backfill import MAX_FIRES, fires_between
from automationd.engine.jobs import JobRuntime
from automationd.engine.launcher import Launcher
from automationd.errors import bad_request
from automationd.records import Trigger
from automationd.store.api import Store
from automationd.store.rows import fire_ms
from automationd.units import rfc3339

log = structlog.get_logger("automationd.backfill")

_CHUNK = 500  # runs per submitted unit: bounded writer entries


class Backfill:
    def __init__(self, *, launcher: Launcher, store: Store, clock: Clock) -> None:
        self._launcher = launcher
        self._store = store
        self._clock = clock
        self._lock = asyncio.Lock()

    async def run(
        self, job: JobRuntime, since: float, until: float, *, dry_run: bool = False
    ) -> dict[str, Any]:
        schedule = job.schedule
        if schedule is None:
            raise bad_request(f"job {job.name!r} has no schedule to backfill")
        if until <= since:
            raise bad_request("args.until: must be after since")
        end = min(until, math.nextafter(self._clock.time(), math.inf))  # up to now
        if job.next_run is not None:
            end = min(end, job.next_run)  # the pending fire is the scheduler's
        anchor = job.last_scheduled if job.last_scheduled is not None else job.next_run
        fires = fires_between(schedule, since, end, anchor=anchor)
        if len(fires) > MAX_FIRES:
            raise bad_request(
                f"the window holds more than {MAX_FIRES:,} fires of {job.name!r}; "
                "backfill it in smaller windows"
            )
        async with self._lock:
            await self._store.commit([])  # everything submitted so far is durable
            taken = await self._store.fired(job.name, since, until)
            taken.update(
                fire_ms(lv.scheduled_for)
                for lv in job.active.values()
                if lv.scheduled_for is not None
            )
            new = [f for f in fires if fire_ms(f) not in taken]
            if dry_run:
                return {
                    "count": len(new),
                    "runs": [],
                    "dry_run": True,
                    "fires": [rfc3339(f) for f in new],
                    "existing": len(fires) - len(new),
                }
            run_ids = await self._create(job, new)
        log.info(
            "job.backfilled",
            job=job.name,
            since=rfc3339(since),
            until=rfc3339(until),
            runs=len(run_ids),
            existing=len(fires) - len(new),
        )
        return {"count": len(run_ids), "runs": run_ids, "existing": len(fires) - len(new)}

    async def _create(self, job: JobRuntime, fires: list[float]) -> list[str]:
        launcher = self._launcher
        out: list[str] = []
        for i in range(0, len(fires), _CHUNK):
            chunk = fires[i : i + _CHUNK]
            lives = [
                launcher.prepare(job, trigger=Trigger.BACKFILL, scheduled_for=f) for f in chunk
            ]
            await launcher.start(lives)
            out.extend(lv.id for lv in lives)
        return out
