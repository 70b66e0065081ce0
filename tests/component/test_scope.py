"""``user_group`` rules at the command table (admin/scope.py), with callers made by hand (the
real-users version is tests/system/test_user_group.py, which needs root): what a member may
see and do, what it is refused and how, and that admins pass untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from automationd.admin.command import Command, invoke
from automationd.admin.scope import Scope
from automationd.caller import Caller, Via
from automationd.config.model import ExecAction, JobSpec
from automationd.core.runstate import RunState
from automationd.engine.jobs import JobRuntime, JobTable
from automationd.errors import AdminError, ErrorKind
from automationd.records import DlqEntry, Run, RunError, Trigger
from automationd.store.api import RunQuery
from automationd.store.rows import w_dlq, w_run
from automationd.store.sqlite.store import SqliteStore, open_sqlite

ALICE, BOB = 1001, 1002


def job(name: str, source: str, owner: int | None) -> JobRuntime:
    spec = JobSpec(name=name, on="x", action=ExecAction(argv=("true",)), source=source)
    j = JobRuntime(spec=spec, schedule=None)
    j.owner = owner
    return j


def user(uid: int) -> Caller:
    return Caller(via=Via.SOCKET, uid=uid, user=f"u{uid}", admin=False)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with open_sqlite(tmp_path) as s:
        yield s


@pytest.fixture
async def table(store: SqliteStore) -> dict[str, Command]:
    jobs = JobTable()
    for j in (job("cfg", "config", None), job("a", "api", ALICE), job("b", "api", BOB)):
        jobs.put(j)
    runs = [
        Run(id=f"{i:032x}", job=name, state=RunState.FAILED, trigger=Trigger.MANUAL, created_at=1.0)
        for i, name in enumerate(("cfg", "a", "b", "a", "b"), start=1)
    ]
    err = RunError(kind=ErrorKind.FATAL, message="x")
    letters = [
        DlqEntry(id=f"d{r.id}", run_id=r.id, job=r.job, target=None, target_idx=-1, error=err,
                 failed_at=1.0)
        for r in runs
    ]  # fmt: skip
    await store.commit([*(w_run(r) for r in runs), *(w_dlq(e) for e in letters)])

    async def answer(name: str, args: dict[str, Any]) -> Any:
        if name == "jobs.list":
            return [j.to_json() for j in jobs]
        if name == "runs.list":
            return [r.to_json() for r in await store.runs(RunQuery(limit=args["limit"]))]
        if name == "runs.get":
            run = await store.run(args["id"])
            return run.to_json() if run else None
        if name == "dlq.summary":
            return [{"job": j, "kind": "fatal", "count": 1} for j in ("cfg", "a", "b")]
        if name == "dlq.list":
            return [e.to_json() for e in await store.dlq(job=None, limit=args["limit"])]
        return {"done": name, **args}

    def handler(name: str) -> Any:
        async def h(args: dict[str, Any], caller: Caller) -> Any:
            return await answer(name, args)

        return h

    names = "jobs.list jobs.get jobs.trigger jobs.update runs.list runs.get runs.cancel dlq.list"
    names += " dlq.purge dlq.summary runs.rollback reload some.future.command status"
    plain = {n: Command(n, handler(n), writes=True) for n in names.split()}
    return Scope(jobs=jobs, store=store, config_path=lambda: Path("/etc/a.toml")).wrap(plain)


async def call(table: dict[str, Command], cmd: str, args: dict[str, Any], who: Caller) -> Any:
    async with asyncio.timeout(5):
        return await invoke(table[cmd], args, who)


async def refused(table: dict[str, Command], cmd: str, args: dict[str, Any], who: Caller) -> str:
    with pytest.raises(AdminError) as ei:
        await call(table, cmd, args, who)
    assert ei.value.code == "forbidden"
    return ei.value.message


async def test_a_member_sees_config_jobs_and_its_own(table: dict[str, Command]) -> None:
    """alice lists cfg and a (not b), her runs and cfg's, and the dead letters of those; an
    admin sees all five runs."""
    alice = user(ALICE)
    assert [j["name"] for j in await call(table, "jobs.list", {}, alice)] == ["cfg", "a"]
    runs = await call(table, "runs.list", {"limit": 50}, alice)
    assert sorted(r["job"] for r in runs) == ["a", "a", "cfg"]
    assert len(await call(table, "runs.list", {"limit": 2, "offset": 1}, alice)) == 2
    letters = await call(table, "dlq.list", {"limit": 50}, alice)
    assert sorted(e["job"] for e in letters) == ["a", "a", "cfg"]
    summary = await call(table, "dlq.summary", {}, alice)
    assert [g["job"] for g in summary] == ["cfg", "a"]
    admin = Caller(via=Via.SOCKET, uid=0, user="root")
    assert len(await call(table, "runs.list", {"limit": 50}, admin)) == 5


async def test_everything_else_is_forbidden_naming_the_owner(table: dict[str, Command]) -> None:
    """bob may not read or change alice's job or its runs (the message names alice's uid),
    may not change a config job, and may not use admin-only or unknown commands; his own
    job and reads of cfg pass."""
    bob = user(BOB)
    a_run = f"{2:032x}"
    for cmd, args in (
        ("jobs.get", {"name": "a"}),
        ("jobs.trigger", {"name": "a"}),
        ("jobs.update", {"name": "a"}),
        ("runs.get", {"id": a_run}),
        ("runs.cancel", {"id": a_run}),
        ("dlq.purge", {"id": f"d{a_run}"}),
        ("runs.rollback", {"id": a_run}),
        ("dlq.summary", {"job": "a"}),
    ):
        assert f"uid {ALICE}" in await refused(table, cmd, args, bob), cmd
    assert "managed by /etc/a.toml" in await refused(table, "jobs.trigger", {"name": "cfg"}, bob)
    for cmd in ("reload", "some.future.command"):
        assert "admins only" in await refused(table, cmd, {}, bob)
    assert "by id or job" in await refused(table, "dlq.purge", {"all": True}, bob)
    assert "by id or job" in await refused(table, "dlq.purge", {"kind": "fatal"}, bob)
    assert (await call(table, "jobs.trigger", {"name": "b"}, bob))["done"] == "jobs.trigger"
    assert (await call(table, "jobs.get", {"name": "cfg"}, bob))["done"] == "jobs.get"
    assert (await call(table, "runs.get", {"id": f"{1:032x}"}, bob))["job"] == "cfg"
    assert (await call(table, "status", {}, bob))["done"] == "status"
    unknown = await call(table, "jobs.get", {"name": "nope"}, bob)
    assert unknown["name"] == "nope"  # passes on: the command itself answers not_found


async def test_a_member_applying_a_preview_must_name_its_job(table: dict[str, Command]) -> None:
    """bob may not apply a preview without ``name`` (the scope could not see whose job it is),
    nor name alice's or a config job; naming his own passes (the apply path then checks that
    the preview is of that job)."""
    bob = user(BOB)
    preview = f"{2:032x}"
    assert "args.name" in await refused(table, "jobs.trigger", {"apply": preview}, bob)
    assert f"uid {ALICE}" in await refused(
        table, "jobs.trigger", {"apply": preview, "name": "a"}, bob
    )
    assert "managed by" in await refused(
        table, "jobs.trigger", {"apply": preview, "name": "cfg"}, bob
    )
    mine = await call(table, "jobs.trigger", {"apply": preview, "name": "b"}, bob)
    assert mine["done"] == "jobs.trigger"
    admin = Caller(via=Via.SOCKET, uid=0, user="root")
    assert (await call(table, "jobs.trigger", {"apply": preview}, admin))["apply"] == preview
