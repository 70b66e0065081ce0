"""``[daemon] user_group``: what a caller who is not an admin may see and do.

Rules (issue 14):
- Admins (root, the daemon's uid, ``admin_group`` members: ``Caller.admin``) see and do
  everything; their requests pass through untouched.
- A ``user_group`` member may add jobs (they become its own: ``owner`` is its uid), and see,
  change, trigger and remove only its own; config jobs (and their runs) are visible to it
  read-only. Any refusal is ``forbidden`` and names the owner.
- Every command that names or lists jobs, runs, dead letters or events is scoped here, by a
  rule per command. Lists are filtered (a job's runs, dead letters and ``run.*`` events go
  with the job). A command without a rule is for admins only: a command added later is
  closed to users until someone decides otherwise.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from automationd.admin.access import user_name
from automationd.admin.command import Command, Reply
from automationd.caller import Caller
from automationd.engine.jobs import JobRuntime, JobTable
from automationd.errors import forbidden
from automationd.store.api import Store

_PAGE, _PAGES = 1000, 20  # a filtered runs.list reads at most this many pages


class Rule(enum.Enum):
    OPEN = "open"  # anyone allowed on the socket (the handler scopes itself if needed)
    JOB_READ = "job_read"  # args.name: a job the caller may see
    JOB_WRITE = "job_write"  # args.name: a job the caller owns (required with args.apply)
    JOBS_LIST = "jobs_list"
    RUN_READ = "run_read"  # args.id: a run of a job the caller may see
    RUN_WRITE = "run_write"  # args.id: a run of a job the caller owns
    RUNS_LIST = "runs_list"
    DLQ_LIST = "dlq_list"
    DLQ_WRITE = "dlq_write"  # args.id or args.job: the caller's own dead letters
    JOB_ROWS = "job_rows"  # a list whose rows name their job (args.job, if given, visible)
    EVENTS_LIST = "events_list"
    ADMIN = "admin"


RULES: dict[str, Rule] = {
    "status": Rule.OPEN,
    "limits.list": Rule.OPEN,
    "breakers.list": Rule.OPEN,
    "audit.list": Rule.OPEN,  # a user sees its own entries (admin/audit_cmds.py)
    "jobs.add": Rule.OPEN,
    "jobs.list": Rule.JOBS_LIST,
    "jobs.get": Rule.JOB_READ,
    "jobs.explain": Rule.JOB_READ,
    "jobs.remove": Rule.JOB_WRITE,
    "jobs.pause": Rule.JOB_WRITE,
    "jobs.resume": Rule.JOB_WRITE,
    "jobs.trigger": Rule.JOB_WRITE,
    "jobs.update": Rule.JOB_WRITE,
    "jobs.backfill": Rule.JOB_WRITE,
    "runs.list": Rule.RUNS_LIST,
    "runs.get": Rule.RUN_READ,
    "runs.logs": Rule.RUN_READ,
    "runs.cancel": Rule.RUN_WRITE,
    "runs.retry": Rule.RUN_WRITE,
    "runs.rollback": Rule.RUN_WRITE,
    "dlq.list": Rule.DLQ_LIST,
    "dlq.retry": Rule.DLQ_WRITE,
    "dlq.purge": Rule.DLQ_WRITE,
    "dlq.summary": Rule.JOB_ROWS,
    "events.list": Rule.EVENTS_LIST,
}

Handler = Callable[..., Awaitable[Any] | None]


class Scope:
    def __init__(self, *, jobs: JobTable, store: Store, config_path: Callable[[], Path]) -> None:
        self._jobs = jobs
        self._store = store
        self._config_path = config_path

    def wrap(self, table: dict[str, Command]) -> dict[str, Command]:
        return {
            name: replace(cmd, handler=self._guarded(cmd, RULES.get(name, Rule.ADMIN)))
            for name, cmd in table.items()
        }

    # -- who may what ---------------------------------------------------------------------
    def visible(self, caller: Caller, job: JobRuntime | None) -> bool:
        if caller.admin:
            return True
        if job is None:
            return False
        return job.spec.source == "config" or job.owner == caller.uid

    def check(self, caller: Caller, name: str, *, write: bool) -> None:
        """Refuse (``forbidden``) unless the caller may see, or with ``write`` change, job
        ``name``. An unknown name passes: the command answers ``not_found`` itself."""
        if caller.admin:
            return
        job = self._jobs.get(name)
        if job is None:
            return
        if job.spec.source == "config":
            if write:
                raise forbidden(
                    f"job {name!r} is managed by {self._config_path()}; user_group members "
                    "may only read it"
                )
            return
        if job.owner != caller.uid:
            raise forbidden(f"job {name!r} belongs to {_who(job.owner)}")

    def _job_named(self, caller: Caller, name: Any, *, write: bool) -> None:
        if isinstance(name, str):
            if name not in self._jobs and not caller.admin:
                raise forbidden(f"job {name!r} no longer exists; only admins see its records")
            self.check(caller, name, write=write)

    # -- the wrappers ---------------------------------------------------------------------
    def _guarded(self, command: Command, rule: Rule) -> Handler:
        inner = command.handler
        if rule is Rule.OPEN:
            return inner
        if command.replies:  # jobs.trigger: checked synchronously, the hot path stays

            def replying(args: dict[str, Any], caller: Caller, reply: Reply) -> Any:
                if not caller.admin:
                    self._sync_check(command.name, rule, args, caller)
                return inner(args, caller, reply)

            return replying

        def plain(args: dict[str, Any], caller: Caller) -> Awaitable[Any]:
            if caller.admin:
                answer = inner(args, caller)
                assert answer is not None
                return answer
            return self._as_user(command.name, rule, inner, args, caller)

        return plain

    def _sync_check(self, cmd: str, rule: Rule, args: dict[str, Any], caller: Caller) -> None:
        if rule is Rule.JOB_WRITE or rule is Rule.JOB_READ:
            name = args.get("name")
            if isinstance(name, str):
                self.check(caller, name, write=rule is Rule.JOB_WRITE)
            elif args.get("apply") is not None:
                # the preview's job is unknown here; the apply path refuses a name that is
                # not the preview's job (engine/intake.py), so naming it closes the gap
                raise forbidden("user_group members name the preview's job (args.name) to apply it")
        elif rule is Rule.ADMIN:
            raise forbidden(f"{cmd} is for admins only (root, the daemon's user, admin_group)")

    async def _as_user(
        self, cmd: str, rule: Rule, inner: Handler, args: dict[str, Any], caller: Caller
    ) -> Any:
        if rule in (Rule.JOB_READ, Rule.JOB_WRITE, Rule.ADMIN):
            self._sync_check(cmd, rule, args, caller)
            return await _call(inner, args, caller)
        if rule is Rule.JOBS_LIST:
            out = await _call(inner, args, caller)
            return [j for j in out if self.visible(caller, self._jobs.get(j.get("name")))]
        if rule is Rule.RUN_READ or rule is Rule.RUN_WRITE:
            run_id = args.get("id")
            run = await self._store.run(run_id) if isinstance(run_id, str) else None
            if run is not None:
                self._job_named(caller, run.job, write=rule is Rule.RUN_WRITE)
            return await _call(inner, args, caller)
        if rule is Rule.RUNS_LIST:
            return await self._runs_list(inner, args, caller)
        if rule is Rule.DLQ_LIST:
            if isinstance(args.get("job"), str):
                self._job_named(caller, args["job"], write=False)
                return await _call(inner, args, caller)
            limit = args.get("limit", 50)
            out = await _call(inner, {**args, "limit": _PAGE}, caller)
            seen = [e for e in out if self.visible(caller, self._jobs.get(e.get("job")))]
            return seen[:limit] if isinstance(limit, int) else seen
        if rule is Rule.DLQ_WRITE:
            await self._dlq_write(args, caller)
            return await _call(inner, args, caller)
        if rule is Rule.JOB_ROWS:
            if isinstance(args.get("job"), str):
                self._job_named(caller, args["job"], write=False)
            out = await _call(inner, args, caller)
            return [row for row in out if self.visible(caller, self._jobs.get(row.get("job")))]
        assert rule is Rule.EVENTS_LIST
        out = await _call(inner, args, caller)
        return [e for e in out if self._event_visible(caller, e)]

    async def _runs_list(self, inner: Handler, args: dict[str, Any], caller: Caller) -> Any:
        if isinstance(args.get("job"), str):
            self._job_named(caller, args["job"], write=False)
            return await _call(inner, args, caller)
        limit, offset = args.get("limit", 50), args.get("offset", 0)
        if not isinstance(limit, int) or not isinstance(offset, int):
            return await _call(inner, args, caller)  # let the command say what is wrong
        page = {k: v for k, v in args.items() if k != "offset"} | {"limit": _PAGE}
        seen: list[Any] = []
        for _ in range(_PAGES):
            rows = await _call(inner, page, caller)
            seen.extend(r for r in rows if self.visible(caller, self._jobs.get(r.get("job"))))
            if len(seen) >= offset + limit or len(rows) < _PAGE:
                break
            page["before"] = rows[-1]["id"]
        return seen[offset : offset + limit]

    async def _dlq_write(self, args: dict[str, Any], caller: Caller) -> None:
        if args.get("all") or not isinstance(args.get("id") or args.get("job"), str):
            raise forbidden("user_group members retry or purge dead letters by id or job")
        if isinstance(args.get("job"), str):
            self._job_named(caller, args["job"], write=True)
        if isinstance(args.get("id"), str):
            entries = await self._store.dlq_select(id=args["id"], job=None, all=False)
            for e in entries:
                self._job_named(caller, e.job, write=True)

    def _event_visible(self, caller: Caller, event: Any) -> bool:
        payload = event.get("payload") if isinstance(event, dict) else None
        job = payload.get("job") if isinstance(payload, dict) else None
        return not isinstance(job, str) or self.visible(caller, self._jobs.get(job))


async def _call(inner: Handler, args: dict[str, Any], caller: Caller) -> Any:
    answer = inner(args, caller)
    assert answer is not None
    return await answer


def _who(uid: int | None) -> str:
    if uid is None:
        return "an admin (no owner)"
    name = user_name(uid)
    return f"uid {uid} ({name})" if name else f"uid {uid}"
