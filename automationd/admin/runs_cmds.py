"""The ``runs.*`` and ``dlq.*`` commands."""

from __future__ import annotations

import asyncio
from typing import Any

from automationd.admin.args import (
    bool_arg,
    choice_arg,
    id_arg,
    int_arg,
    opt_id,
    opt_name,
    time_arg,
)
from automationd.admin.command import Command
from automationd.admin.undo_cmds import kind_arg
from automationd.caller import Caller
from automationd.core.runstate import RunState
from automationd.engine.launcher import Launcher
from automationd.engine.redo import Redo
from automationd.engine.report import Report
from automationd.errors import bad_request, conflict, not_found
from automationd.fleet.api import Crew
from automationd.records import DlqEntry, Run, Trigger
from automationd.store.api import RunQuery, Store

_RUN_STATES = frozenset(s.value for s in RunState)
_TRIGGERS = frozenset(t.value for t in Trigger)


class RunCommands:
    def __init__(
        self,
        *,
        store: Store,
        launcher: Launcher,
        report: Report,
        redo: Redo,
        crew: Crew | None = None,
    ) -> None:
        self._clock = launcher.clock
        self._crew = crew
        self._store = store
        self._launcher = launcher
        self._report = report
        self._redo = redo

    def commands(self) -> list[Command]:
        return [
            Command(
                "runs.list", self.runs_list, writes=False, json_args=frozenset({"limit", "offset"})
            ),
            Command("runs.get", self.runs_get, writes=False),
            Command("runs.logs", self.runs_logs, writes=False),
            Command("runs.cancel", self.runs_cancel, writes=True),
            Command("runs.retry", self.runs_retry, writes=True),
            Command("dlq.list", self.dlq_list, writes=False, json_args=frozenset({"limit"})),
            Command("dlq.retry", self.dlq_retry, writes=True, json_args=frozenset({"all"})),
            Command("dlq.purge", self.dlq_purge, writes=True, json_args=frozenset({"all"})),
        ]

    async def runs_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        now = self._clock.time()
        runs = await self._store.runs(
            RunQuery(
                job=opt_name(args, "job"),
                state=choice_arg(args, "state", _RUN_STATES),
                trigger=choice_arg(args, "trigger", _TRIGGERS),
                since=time_arg(args, "since", now),
                until=time_arg(args, "until", now),
                before=opt_id(args, "before"),
                limit=int_arg(args, "limit", 50, 1, 1000),
                offset=int_arg(args, "offset", 0, 0, 1 << 40),
            )
        )
        return [r.to_json() for r in runs]

    async def _run(self, args: dict[str, Any]) -> Run:
        run_id = id_arg(args)
        run = await self._store.run(run_id)
        if run is None:
            raise not_found(f"no run with id {run_id!r}")
        return run

    async def runs_get(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        run = await self._run(args)
        out = run.to_json()
        out["attempts"] = [a.to_json() for a in await self._store.attempts(run.id)]
        out["targets"] = [t.to_json() for t in await self._store.targets(run)]
        return out

    async def runs_logs(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        run = await self._run(args)
        return await self._store.logs(run.id)

    async def runs_cancel(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        run_id = id_arg(args)
        live = self._launcher.cancel(run_id)
        if live is not None:
            if live.task is not None:
                await asyncio.wait([live.task])  # its own outcome is read below
            await self._report.settle()
        run = await self._run(args)
        if live is None and run.state.terminal:
            raise conflict(f"run {run_id} already ended ({run.state.value})")
        if live is None and self._crew is not None and await self._crew.cancel_elsewhere(run_id):
            run = await self._run(args)  # held by another daemon of the fleet, or by nobody
        return run.to_json()

    async def runs_retry(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self._redo.retry_run(id_arg(args))).to_json()

    async def dlq_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        entries = await self._store.dlq(
            job=opt_name(args, "job"), limit=int_arg(args, "limit", 50, 1, 1000)
        )
        return [e.to_json() for e in entries]

    async def _dlq_pick(self, args: dict[str, Any]) -> list[DlqEntry]:
        """One entry by ``id``; or every entry matching all filters given (``job``, ``kind``,
        ``since``); or ``all``."""
        id_, job, all_ = opt_id(args, "id"), opt_name(args, "job"), bool_arg(args, "all")
        kind, since = kind_arg(args), time_arg(args, "since", self._clock.time())
        filtered = job is not None or kind is not None or since is not None
        if id_ is None and not filtered and not all_:
            raise bad_request("args: give one of id, job, kind, since or all=true")
        if id_ is not None and filtered:
            raise bad_request("args.id: give an id alone, or filters (job, kind, since)")
        entries = await self._store.dlq_select(id=id_, job=job, all=all_, kind=kind, since=since)
        if id_ is not None and not entries:
            raise not_found(f"no dead letter with id {id_!r}")
        return entries

    async def dlq_retry(self, args: dict[str, Any], caller: Caller) -> dict[str, int]:
        return {"requeued": await self._redo.dlq_retry(lambda: self._dlq_pick(args))}

    async def dlq_purge(self, args: dict[str, Any], caller: Caller) -> dict[str, int]:
        return {"purged": await self._redo.dlq_purge(lambda: self._dlq_pick(args))}
