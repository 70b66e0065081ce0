"""Store contract for issue 14 (every backend): a job row's revision, owner and override;
fire claims (one run per job and fire time, freed by retention); the audit trail (written,
filtered, newest first, pruned); an online backup."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from pathlib import Path

import pytest

from automationd.core.ids import IdGenerator, id_floor
from automationd.core.runstate import RunState
from automationd.errors import StoreError
from automationd.records import AuditEntry, Run, Trigger
from automationd.store.api import AuditQuery, PrunePass, Store
from automationd.store.jobs import JobRow, w_job
from automationd.store.rows import fire_ms, w_audit, w_run

T0 = 1_780_000_000.0


def entry(ids: IdGenerator, at: float, *, uid: int | None, job: str | None, cmd: str) -> AuditEntry:
    return AuditEntry(
        id=ids.new(at),
        at=at,
        via="socket",
        uid=uid,
        user=f"u{uid}",
        cmd=cmd,
        target=job,
        job=job,
        args={"name": job, "env": {"K": "***"}},
        digest="0123456789abcdef",
        outcome="ok",
    )


async def test_job_rows_keep_revision_owner_and_override(store: Store) -> None:
    """A row's revision, owner and override read back as written."""
    async with asyncio.timeout(5):
        row = JobRow(name="a", source="api", spec={"name": "a"}, revision=7, owner=1001)
        cfg = JobRow(name="c", source="config", spec={"name": "c"}, override=True, revision=2)
        await store.commit([w_job(row), w_job(cfg)])
        rows = await store.job_rows()
    got = rows.get("c")
    assert got is not None and (got.override, got.revision, got.owner) == (True, 2, None)
    (api,) = rows.take_api_specs()
    assert (api.name, api.revision, api.owner) == ("a", 7, 1001)


async def test_a_fire_has_one_run_and_is_found_by_window(store: Store, ids: IdGenerator) -> None:
    """Backfill and scheduled runs are found by their fire time in [since, until); a second
    run of one fire fails its unit (nothing of it stored); pruning the run frees its fire."""
    due = [T0 + 300 * i for i in range(3)]
    runs = [
        Run(
            id=ids.new(T0),
            job="j",
            state=RunState.SUCCEEDED,
            trigger=Trigger.BACKFILL,
            created_at=T0,
            scheduled_for=d,
        )
        for d in due
    ]
    scheduled = Run(
        id=ids.new(T0),
        job="j",
        state=RunState.SKIPPED,
        trigger=Trigger.SCHEDULE,
        created_at=T0,
        scheduled_for=T0 + 900,
    )
    async with asyncio.timeout(10):
        await store.commit([w_run(r) for r in runs])
        await store.commit([w_run(scheduled)])
        assert await store.fired("j", T0, T0 + 901) == {fire_ms(d) for d in [*due, T0 + 900]}
        assert await store.fired("j", T0, T0 + 600) == {fire_ms(due[0]), fire_ms(due[1])}
        assert await store.fired("other", T0, T0 + 901) == set()
        twin = Run(id=ids.new(T0), job="j", state=RunState.QUEUED, trigger=Trigger.BACKFILL,
                   created_at=T0, scheduled_for=due[0])  # fmt: skip
        with pytest.raises(StoreError):
            await store.commit([w_run(twin)])
        assert await store.run(twin.id) is None
        prune = PrunePass(before=id_floor(T0 + 1))
        while (await store.prune_runs_step(prune, 100))[1]:
            pass
        assert await store.fired("j", T0, T0 + 901) == set()


async def test_audit_entries_filter_newest_first_and_prune(store: Store, ids: IdGenerator) -> None:
    """Entries read back whole, newest first, by job, uid, since and limit; a prune step
    removes those below its id and says when none are left."""
    made = [
        entry(ids, T0 + i, uid=1000 + i % 2, job=("a", "b")[i % 2], cmd="jobs.update")
        for i in range(6)
    ]
    async with asyncio.timeout(10):
        await store.commit([w_audit(e) for e in made])
        got = await store.audit(AuditQuery(limit=100))
        assert got == made[::-1]
        assert [e.id for e in await store.audit(AuditQuery(job="a"))] == [
            e.id for e in made[::-1] if e.job == "a"
        ]
        assert {e.uid for e in await store.audit(AuditQuery(uid=1001))} == {1001}
        assert len(await store.audit(AuditQuery(since=T0 + 4))) == 2
        assert len(await store.audit(AuditQuery(limit=2))) == 2
        n, more, _ = await store.prune_audit_step(id_floor(T0 + 3), 2)
        assert (n, more) == (2, True)
        n, more, _ = await store.prune_audit_step(id_floor(T0 + 3), 2)
        assert (n, more) == (1, False)
        assert [e.id for e in await store.audit(AuditQuery(limit=100))] == [
            e.id for e in made[:2:-1]
        ]


async def test_backup_is_a_new_consistent_file(
    store: Store, tmp_path: Path, ids: IdGenerator
) -> None:
    """A backup holds what was committed, opens, and passes integrity_check; an existing
    target is refused and left alone."""
    run = Run(id=ids.new(T0), job="j", state=RunState.SUCCEEDED, trigger=Trigger.MANUAL,
              created_at=T0)  # fmt: skip
    target = tmp_path / "copy.db"
    async with asyncio.timeout(10):
        await store.commit([w_run(run)])
        size = await store.backup(str(target))
        assert size == target.stat().st_size > 0
        with pytest.raises(Exception, match="exists"):
            await store.backup(str(target))
    if target.read_bytes()[:5] == b"PGDMP":  # PostgreSQL: a pg_dump archive of the database
        listing = _pg_list(target)
        assert "TABLE DATA public runs" in listing
        return
    with sqlite3.connect(target) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT id FROM runs").fetchall() == [(run.id,)]


def _pg_list(archive: Path) -> str:
    """``pg_restore --list`` of a pg_dump archive (its table of contents)."""
    from tests.support.postgres import find_bindir

    bindir = find_bindir()
    assert bindir is not None
    return subprocess.run(
        [str(bindir / "pg_restore"), "--list", str(archive)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
