"""The ``jobs.*`` commands: list, show, add, remove, pause, resume, trigger."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from automationd.admin.args import bool_arg, choice_arg, key_arg, name_arg, payload_arg
from automationd.admin.command import Command, Reply
from automationd.caller import Caller
from automationd.clock import Clock
from automationd.engine.catalog import Catalog
from automationd.engine.intake import Intake
from automationd.engine.jobs import JobRuntime, next_fires
from automationd.errors import bad_request
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
            Command("jobs.add", self.jobs_add, writes=True),
            Command("jobs.remove", self.jobs_remove, writes=True),
            Command("jobs.pause", self.jobs_pause, writes=True),
            Command("jobs.resume", self.jobs_resume, writes=True),
            Command("jobs.trigger", self.jobs_trigger, writes=True, replies=True),
        ]

    async def jobs_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        state = choice_arg(args, "state", _JOB_STATES)
        return [j.to_json() for j in self._catalog.jobs if state is None or j.state == state]

    async def jobs_get(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = self._catalog.get(name_arg(args))
        out = job.to_json()
        now = self._clock.time()
        fires = (
            [{"at": rfc3339(t), "note": note} for t, note in next_fires(job.schedule, now, 5)]
            if job.schedule is not None
            else []
        )
        out["next_fires"] = fires
        last = await self._store.runs(RunQuery(job=job.name, limit=5))
        out["last_runs"] = [r.to_json() for r in last]
        out["spec"] = dict(job.spec.raw)
        return out

    async def jobs_add(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = args.get("job")
        if not isinstance(job, dict):
            raise bad_request("args.job: expected an object with the keys of a [[jobs]] table")
        payload_arg(args, "job")  # finite numbers, at most 1 MiB of JSON
        return (await self._catalog.add(job)).to_json()

    async def jobs_remove(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self._catalog.remove(name_arg(args))).to_json()

    async def jobs_pause(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self._catalog.set_paused(name_arg(args), True)).to_json()

    async def jobs_resume(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self._catalog.set_paused(name_arg(args), False)).to_json()

    def jobs_trigger(
        self, args: dict[str, Any], caller: Caller, reply: Reply
    ) -> Awaitable[dict[str, Any]] | None:
        """The hot path: a plain trigger replies from its write's settlement (no task)."""
        job = self._catalog.get(name_arg(args))
        payload = payload_arg(args)
        key = key_arg(args)
        if bool_arg(args, "dry_run"):
            return self._intake.dry_run(job, payload)
        if key is None:
            self._intake.trigger_then(job, reply, payload=payload)
            return None
        return self._trigger_keyed(job, payload, key)

    async def _trigger_keyed(self, job: JobRuntime, payload: Any, key: str) -> dict[str, Any]:
        run, existing = await self._intake.trigger(job, payload=payload, idempotency_key=key)
        out = run.to_json()
        if existing:
            out["existing"] = True
        return out
