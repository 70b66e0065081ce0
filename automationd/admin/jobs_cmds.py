"""The ``jobs.*`` commands: list, show, add, remove, pause, resume, trigger (and preview,
apply)."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any

from automationd.admin.args import (
    bool_arg,
    choice_arg,
    key_arg,
    name_arg,
    opt_id,
    opt_name,
    payload_arg,
)
from automationd.admin.command import Command, Reply
from automationd.caller import Caller
from automationd.clock import Clock
from automationd.core.redact import redact
from automationd.engine.catalog import Catalog
from automationd.engine.intake import Intake
from automationd.engine.jobs import JobRuntime, next_fires
from automationd.errors import bad_request
from automationd.records import Run
from automationd.store.api import RunQuery, Store
from automationd.units import rfc3339

_JOB_STATES = frozenset({"enabled", "paused", "completed"})


class JobCommands:
    def __init__(self, *, catalog: Catalog, intake: Intake, store: Store, clock: Clock) -> None:
        self._catalog = catalog
        self._intake = intake
        self._store = store
        self._clock = clock

    def commands(self) -> list[Command]:
        return [
            Command("jobs.list", self.jobs_list, writes=False),
            Command("jobs.get", self.jobs_get, writes=False),
            Command("jobs.add", self.jobs_add, writes=True, json_args=frozenset({"job"})),
            Command(
                "jobs.remove", self.jobs_remove, writes=True, json_args=frozenset({"override"})
            ),
            Command("jobs.pause", self.jobs_pause, writes=True),
            Command("jobs.resume", self.jobs_resume, writes=True),
            Command(
                "jobs.trigger",
                self.jobs_trigger,
                writes=True,
                replies=True,
                json_args=frozenset({"payload", "dry_run"}),
            ),
        ]

    async def jobs_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        state = choice_arg(args, "state", _JOB_STATES)
        return [j.to_json() for j in self._catalog.jobs if state is None or j.state == state]

    async def jobs_get(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = self._catalog.get(name_arg(args))
        out = job.to_json()
        now = self._clock.time()
        fires = (
            [
                {"at": rfc3339(t), "note": note}
                for t, note in next_fires(job.schedule, _preview_from(job, now), 5)
            ]
            if job.schedule is not None
            else []
        )
        out["next_fires"] = fires
        last = await self._store.runs(RunQuery(job=job.name, limit=5))
        out["last_runs"] = [r.to_json() for r in last]
        # a user_group member reads config jobs: their env and headers are the admin's secrets
        out["spec"] = dict(job.spec.raw) if caller.admin else redact(job.spec.raw)
        return out

    async def jobs_add(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = args.get("job")
        if not isinstance(job, dict):
            raise bad_request("args.job: expected an object with the keys of a [[jobs]] table")
        payload_arg(args, "job")  # finite numbers, at most 1 MiB of JSON
        # the owner is the uid that added it (SO_PEERCRED); admin/scope.py acts on it
        return (await self._catalog.add(job, owner=caller.uid)).to_json()

    async def jobs_remove(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name, override = name_arg(args), bool_arg(args, "override")
        return (await self._catalog.remove(name, override=override)).to_json()

    async def jobs_pause(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self._catalog.set_paused(name_arg(args), True)).to_json()

    async def jobs_resume(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self._catalog.set_paused(name_arg(args), False)).to_json()

    def jobs_trigger(
        self, args: dict[str, Any], caller: Caller, reply: Reply
    ) -> Awaitable[dict[str, Any]] | None:
        """The hot path: a plain trigger replies from its write's settlement (no task).

        ``dry_run`` makes a stored preview run; ``apply`` (a preview's run id; ``name`` may
        then be left out) applies one (SPEC §7.2, engine/intake.py)."""
        preview_id = opt_id(args, "apply")
        if preview_id is not None:
            return self._apply(args, preview_id)
        job = self._catalog.get(name_arg(args))
        payload = payload_arg(args)
        key = key_arg(args)
        if bool_arg(args, "dry_run"):
            return self._preview(job, payload, key)
        if key is None:
            self._intake.trigger_then(job, reply, payload=payload)
            return None
        return self._trigger_keyed(job, payload, key)

    async def _trigger_keyed(self, job: JobRuntime, payload: Any, key: str) -> dict[str, Any]:
        run, existing = await self._intake.trigger(job, payload=payload, idempotency_key=key)
        return _answer(run, existing)

    async def _preview(self, job: JobRuntime, payload: Any, key: str | None) -> dict[str, Any]:
        run, existing = await self._intake.preview(job, payload=payload, idempotency_key=key)
        return _answer(run, existing)

    async def _apply(self, args: dict[str, Any], preview_id: str) -> dict[str, Any]:
        if bool_arg(args, "dry_run"):
            raise bad_request("args.apply: give either apply or dry_run, not both")
        for key in ("payload", "idempotency_key"):
            if args.get(key) is not None:
                raise bad_request(f"args.{key}: an apply takes its preview's (leave it out)")
        name = opt_name(args, "name")
        if name is not None:
            self._catalog.get(name)  # an unknown job is not_found, as for any trigger
        run, existing = await self._intake.apply(preview_id, name)
        return _answer(run, existing)


def _answer(run: Run, existing: bool) -> dict[str, Any]:
    out = run.to_json()
    if existing:
        out["existing"] = True
    return out


def _preview_from(job: JobRuntime, now: float) -> float:
    """Where ``jobs show``'s next fires start, so the first is the fire the scheduler holds
    (``next_run``): just before it, or for ``@every`` (which counts from the previous fire)
    one interval before it; ``now`` when nothing is scheduled."""
    due, schedule = job.next_run, job.schedule
    if due is None or schedule is None:
        return now
    if schedule.interval is not None:
        return due - schedule.interval
    return math.nextafter(due, -math.inf)
