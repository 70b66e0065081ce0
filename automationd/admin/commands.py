"""Admin commands: the cmd → handler table behind the socket (SPEC §3).

Handlers validate their args (``bad_request`` naming the field), call the engine, and return
JSON-able results. They never reach into SQL themselves except through the stores.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from automationd import __version__
from automationd.admin.command import Command, Handler, Reply
from automationd.caller import Caller
from automationd.core.runstate import RunState
from automationd.engine.catalog import Catalog
from automationd.engine.dispatcher import Engine
from automationd.engine.eventbus import EventBus
from automationd.engine.intake import Intake
from automationd.engine.jobs import next_fires
from automationd.engine.redo import Redo
from automationd.errors import bad_request, conflict, not_found
from automationd.store.events import EventStore
from automationd.store.runs import RunStore
from automationd.units import parse_rfc3339, rfc3339


def _str(args: dict[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v:
        raise bad_request(f"args.{key}: expected a non-empty string")
    return v


def _opt_str(args: dict[str, Any], key: str) -> str | None:
    v = args.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise bad_request(f"args.{key}: expected a string")
    return v


def _int(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = args.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad_request(f"args.{key}: expected an integer from {lo} to {hi}")
    return v


def _bool(args: dict[str, Any], key: str) -> bool:
    v = args.get(key, False)
    if not isinstance(v, bool):
        raise bad_request(f"args.{key}: expected true or false")
    return v


def _time(args: dict[str, Any], key: str) -> float | None:
    v = args.get(key)
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return parse_rfc3339(v)
    except ValueError as exc:
        raise bad_request(f"args.{key}: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Commands:
    engine: Engine
    catalog: Catalog
    intake: Intake
    redo: Redo
    bus: EventBus
    runs: RunStore
    events: EventStore
    services: Any
    started_at: float
    reload: Callable[[], Awaitable[dict[str, int]]]

    def table(self) -> dict[str, Command]:
        """Every command, once: the socket and the HTTP API both serve this table."""
        rows: list[tuple[str, Handler, bool]] = [
            ("status", self.status, False),
            ("jobs.list", self.jobs_list, False),
            ("jobs.get", self.jobs_get, False),
            ("jobs.add", self.jobs_add, True),
            ("jobs.remove", self.jobs_remove, True),
            ("jobs.pause", self.jobs_pause, True),
            ("jobs.resume", self.jobs_resume, True),
            ("jobs.trigger", self.jobs_trigger, True),
            ("runs.list", self.runs_list, False),
            ("runs.get", self.runs_get, False),
            ("runs.logs", self.runs_logs, False),
            ("runs.cancel", self.runs_cancel, True),
            ("runs.retry", self.runs_retry, True),
            ("dlq.list", self.dlq_list, False),
            ("dlq.retry", self.dlq_retry, True),
            ("dlq.purge", self.dlq_purge, True),
            ("events.publish", self.events_publish, True),
            ("events.list", self.events_list, False),
            ("events.replay", self.events_replay, True),
            ("limits.list", self.limits_list, False),
            ("breakers.list", self.breakers_list, False),
            ("reload", self.do_reload, True),
        ]
        return {
            name: Command(name, fn, writes, replies=name == "jobs.trigger")
            for name, fn, writes in rows
        }

    async def status(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        e = self.engine
        counts = self.catalog.jobs.counts()
        now = e.clock.time()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": rfc3339(self.started_at),
            "uptime_s": round(now - self.started_at, 3),
            "jobs": {
                "total": len(self.catalog.jobs),
                "enabled": counts["enabled"],
                "paused": counts["paused"],
                "completed": counts["completed"],
            },
            "queue_depth": e.queue_depth(),
            "workers": {"busy": e.pool.busy, "max": e.pool.max},
            "runs_in_flight": len(e.live),
            "dlq_size": e.dlq_size,
            "store": {"healthy": e.db.healthy},
        }

    async def jobs_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        state = _opt_str(args, "state")
        if state is not None and state not in ("enabled", "paused", "completed"):
            raise bad_request("args.state: expected enabled, paused or completed")
        return [j.to_json() for j in self.catalog.jobs if state is None or j.state == state]

    async def jobs_get(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = self.catalog.get(_str(args, "name"))
        out = job.to_json()
        now = self.engine.clock.time()
        fires = (
            [{"at": rfc3339(t), "note": note} for t, note in next_fires(job.schedule, now, 5)]
            if job.schedule is not None
            else []
        )
        out["next_fires"] = fires
        out["last_runs"] = [r.to_json() for r in await self.runs.last_runs(job.name, 5)]
        out["spec"] = dict(job.spec.raw)
        return out

    async def jobs_add(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self.catalog.add(args.get("job"))).to_json()

    async def jobs_remove(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self.catalog.remove(_str(args, "name"))).to_json()

    async def jobs_pause(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self.catalog.set_paused(_str(args, "name"), True)).to_json()

    async def jobs_resume(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self.catalog.set_paused(_str(args, "name"), False)).to_json()

    def jobs_trigger(
        self, args: dict[str, Any], caller: Caller, reply: Reply
    ) -> Awaitable[dict[str, Any]] | None:
        """The hot path: a plain trigger replies from its write's settlement (no task)."""
        job = self.catalog.get(_str(args, "name"))
        payload = args.get("payload")
        if _bool(args, "dry_run"):
            return self.intake.dry_run(job, payload)
        key = _opt_str(args, "idempotency_key")
        if key is None:
            self.intake.trigger_then(job, reply, payload=payload)
            return None
        return self._trigger_keyed(job, payload, key)

    async def _trigger_keyed(self, job: Any, payload: Any, key: str) -> dict[str, Any]:
        run, existing = await self.intake.trigger(job, payload=payload, idempotency_key=key)
        out = run.to_json()
        if existing:
            out["existing"] = True
        return out

    async def runs_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        state = _opt_str(args, "state")
        if state is not None and state not in RunState.__members__.values():
            raise bad_request(f"args.state: unknown run state {state!r}")
        runs = await self.runs.recent(
            job=_opt_str(args, "job"),
            state=state,
            limit=_int(args, "limit", 50, 1, 1000),
            offset=_int(args, "offset", 0, 0, 1 << 40),
        )
        return [r.to_json() for r in runs]

    async def runs_get(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        run_id = _str(args, "id")
        run = await self.runs.get(run_id)
        if run is None:
            raise not_found(f"no run with id {run_id!r}")
        out = run.to_json()
        out["attempts"] = [a.to_json() for a in await self.runs.attempts_of(run)]
        out["targets"] = [t.to_json() for t in await self.runs.targets_of(run)]
        return out

    async def runs_logs(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        run_id = _str(args, "id")
        if await self.runs.get(run_id) is None:
            raise not_found(f"no run with id {run_id!r}")
        return await self.runs.logs(run_id)

    async def runs_cancel(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        run_id = _str(args, "id")
        live = self.engine.cancel(run_id)
        if live is not None and live.task is not None:
            await asyncio.wait([live.task])  # its own outcome is read below
        run = await self.runs.get(run_id)
        if run is None:
            raise not_found(f"no run with id {run_id!r}")
        if live is None and run.state.terminal:
            raise conflict(f"run {run_id} already ended ({run.state.value})")
        return run.to_json()

    async def runs_retry(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self.redo.retry_run(_str(args, "id"))).to_json()

    async def dlq_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        entries = await self.runs.dlq_list(
            job=_opt_str(args, "job"), limit=_int(args, "limit", 50, 1, 1000)
        )
        return [e.to_json() for e in entries]

    async def _dlq_pick(self, args: dict[str, Any]) -> list[Any]:
        id_, job, all_ = _opt_str(args, "id"), _opt_str(args, "job"), _bool(args, "all")
        if id_ is None and job is None and not all_:
            raise bad_request("args: give one of id, job or all=true")
        entries = await self.runs.dlq_select(id=id_, job=job, all=all_)
        if id_ is not None and not entries:
            raise not_found(f"no dead letter with id {id_!r}")
        return entries

    async def dlq_retry(self, args: dict[str, Any], caller: Caller) -> dict[str, int]:
        return {"requeued": await self.redo.dlq_retry(await self._dlq_pick(args))}

    async def dlq_purge(self, args: dict[str, Any], caller: Caller) -> dict[str, int]:
        return {"purged": await self.redo.dlq_purge(await self._dlq_pick(args))}

    async def events_publish(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = _str(args, "name")
        event, triggered, existing = await self.bus.publish(
            name, args.get("payload"), idempotency_key=_opt_str(args, "idempotency_key")
        )
        out: dict[str, Any] = {"id": event.id, "name": event.name, "triggered": triggered}
        if existing:
            out["existing"] = True
        return out

    async def events_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        events = await self.events.window(
            since=_time(args, "since"),
            until=_time(args, "until"),
            limit=_int(args, "limit", 50, 1, 1000),
            newest_first=True,
            name=_opt_str(args, "name"),
        )
        return [e.to_json() for e in events]

    async def events_replay(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        since = _time(args, "since")
        if since is None:
            raise bad_request("args.since: required (RFC 3339)")
        n, triggered = await self.bus.replay(
            since=since,
            until=_time(args, "until"),
            name=_opt_str(args, "name"),
            force=_bool(args, "force"),
        )
        return {"events": n, "triggered": triggered}

    async def limits_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        return list(self.services.limits_list())

    async def breakers_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        return list(self.services.breakers_list())

    async def do_reload(self, args: dict[str, Any], caller: Caller) -> dict[str, int]:
        return await self.reload()
