"""The PostgreSQL store on a real server: schema checks, shared reads, fencing, duplicates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from automationd.config.model import StoreConfig
from automationd.core.runstate import RunState
from automationd.errors import ErrorKind, StoreError
from automationd.fleet.leases import Leases
from automationd.records import Attempt, DlqEntry, Event, Phase, Run, RunError, Trigger
from automationd.store.api import PrunePass, RunQuery
from automationd.store.jobs import JobRow, w_job, w_job_state
from automationd.store.pg.migrate import LATEST_VERSION, require_current
from automationd.store.pg.schema_cmd import migrate_database
from automationd.store.pg.store import PgStore, open_pg
from automationd.store.rows import w_attempt, w_dlq, w_event, w_run

T0 = 1_700_000_000.0


def run_row(n: int, **kw: object) -> Run:
    base = {
        "id": f"{int(T0 * 1000) + n:012x}{'0' * 20}",
        "job": "j",
        "state": RunState.QUEUED,
        "trigger": Trigger.MANUAL,
        "created_at": T0 + n / 1000,
    }
    base.update(kw)
    return Run(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def pg_store(dsn: str, leases: Leases | None = None) -> AsyncIterator[PgStore]:
    if leases is None:
        leases = Leases("n1", token=7, shares_work=True)
    async with open_pg(
        StoreConfig(backend="postgresql", dsn=dsn), leases, health_interval=60
    ) as store:
        yield store


async def test_unmigrated_database_is_refused_with_the_command_to_run(pg_dsn_empty: str) -> None:
    """``run`` never migrates: an empty database is refused, naming `automationd migrate`."""
    async with asyncio.timeout(20):
        with pytest.raises(StoreError, match="automationd migrate"):
            async with pg_store(pg_dsn_empty):
                pass


async def test_migrate_is_idempotent_and_a_newer_schema_is_refused(pg_dsn_empty: str) -> None:
    """1. migrate twice: 0 → latest, then nothing; 2. a schema newer than the code is refused.
    Result: versions as expected; "upgrade automationd"."""
    async with asyncio.timeout(30):
        assert await migrate_database(pg_dsn_empty) == (0, LATEST_VERSION)
        assert await migrate_database(pg_dsn_empty) == (LATEST_VERSION, LATEST_VERSION)
        conn = await asyncpg.connect(pg_dsn_empty)
        try:
            await conn.execute("INSERT INTO automationd_schema VALUES (99)")
            with pytest.raises(StoreError, match="upgrade automationd"):
                await require_current(conn)
        finally:
            await conn.close()


async def test_rows_round_trip_through_the_shared_reads(pg_dsn: str) -> None:
    """Runs, attempts, events, dead letters and jobs written on PostgreSQL read back as on
    SQLite (store/reads.py with ``$n`` placeholders and no GLOB)."""
    async with asyncio.timeout(20), pg_store(pg_dsn) as store:
        run = run_row(1, lease=7, payload={"a": [1, "é"]}, idempotency_key="k1")
        store._writer  # noqa: B018 - the store is open
        leases_token = 7
        assert leases_token == run.lease
        att = Attempt(
            run_id=run.id,
            n=1,
            phase=Phase.PERFORM,
            target=None,
            target_idx=0,
            started_at=T0,
            finished_at=T0 + 1,
            outcome="ok",
            error=None,
        )
        ev = Event(
            id=f"{int(T0 * 1000) + 5:012x}{'1' * 20}",
            name="inv.changed",
            payload={"x": 1},
            created_at=T0 + 0.005,
            idempotency_key="e1",
        )
        dlq = DlqEntry(
            id="d" * 32,
            run_id=run.id,
            job="j",
            target_idx=-1,
            target=None,
            error=RunError(kind=ErrorKind.FATAL, message="no"),
            failed_at=T0,
        )
        await store.commit(
            [
                w_run(run),
                w_attempt(att, stdout="out\x00put"),
                w_event(ev),
                w_dlq(dlq),
                w_job(JobRow(name="j", source="config", run_count=3)),
            ]
        )
        assert (await store.run(run.id)) == run
        assert (await store.run_by_key("j", "k1")) == run
        assert [r.id for r in await store.runs(RunQuery(job="j"))] == [run.id]
        assert (await store.attempts(run.id))[0].outcome == "ok"
        assert (await store.logs(run.id))[0]["text"] == "out\ufffdput"
        assert (await store.event_by_key("e1")) == ev
        assert [
            e.id
            for e in await store.events(
                since=None, until=None, limit=10, newest_first=True, name="inv.*"
            )
        ] == [ev.id]
        assert (
            await store.events(since=None, until=None, limit=10, newest_first=True, name="other.*")
            == []
        )
        assert [d.id for d in await store.dlq(job="j", limit=5)] == [dlq.id]
        assert await store.dlq_count() == 1
        job = (await store.job_rows()).get("j")
        assert job is not None and job.run_count == 3
        assert [r.id for r in await store.live_runs()] == [run.id]


async def test_a_write_with_a_stale_token_is_refused_and_the_run_reported_lost(pg_dsn: str) -> None:
    """1. daemon n1 creates a run under token 7; 2. another daemon takes it over (new token);
    3. n1 writes the run's end. Result: the write is refused (kind ``fenced``), the row is
    unchanged, and n1 learns the run is lost."""
    leases = Leases("n1", token=7, shares_work=True)
    async with asyncio.timeout(20), pg_store(pg_dsn, leases) as store:
        run = run_row(2, lease=7)
        leases.hold(run.id, 7)
        await store.commit([w_run(run)])
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE runs SET owner='n2', lease=9 WHERE id=$1", run.id)
        finally:
            await conn.close()
        done = replace(run, state=RunState.SUCCEEDED, finished_at=T0 + 9)
        with pytest.raises(StoreError) as refused:
            await store.commit([w_run(done)])
        assert refused.value.kind == "fenced"
        assert await leases.lost() == [run.id]
        stored = await store.run(run.id)
        assert stored is not None and stored.state is RunState.QUEUED and stored.lease == 9


async def test_a_second_fire_or_key_is_refused_whole_and_others_in_the_batch_land(
    pg_dsn: str,
) -> None:
    """Two daemons create a run for one (job, due time), and one per idempotency key, and a
    keyed event: the second of each is refused (kind ``duplicate``) with nothing of its unit
    stored, while a plain run submitted in the same batch is stored."""
    async with (
        asyncio.timeout(20),
        pg_store(pg_dsn, Leases("a", token=1, shares_work=True)) as a,
        pg_store(pg_dsn, Leases("b", token=2, shares_work=True)) as b,
    ):
        fire = dict(trigger=Trigger.SCHEDULE, scheduled_for=T0 + 60)
        await a.commit([w_run(run_row(10, lease=1, **fire))])
        await a.commit([w_run(run_row(11, lease=1, idempotency_key="k"))])
        ev = Event(id="e" * 32, name="x", payload=None, created_at=T0, idempotency_key="ek")
        await a.commit([w_event(ev)])
        dup = run_row(12, lease=2, **fire)
        att = Attempt(
            run_id=dup.id, n=1, phase=Phase.PERFORM, target=None, target_idx=0, started_at=T0
        )
        outcomes: list[BaseException | None] = []
        plain = run_row(14, lease=2)
        b.submit_then([w_run(dup), w_attempt(att)], outcomes.append)
        b.submit_then([w_run(plain)], outcomes.append)
        b.submit_then([w_run(run_row(13, lease=2, idempotency_key="k"))], outcomes.append)
        b.submit_then([w_event(replace(ev, id="f" * 32))], outcomes.append)
        await b.commit([])
        kinds = [getattr(o, "kind", None) for o in outcomes]
        assert kinds == ["duplicate", None, "duplicate", "duplicate"]
        assert await b.run(dup.id) is None and await b.attempts(dup.id) == []
        assert await b.run(plain.id) is not None
        assert (await b.event_by_key("ek")) == ev


async def test_job_counters_merge_and_only_an_operator_change_sets_the_pause(pg_dsn: str) -> None:
    """On PostgreSQL a job's counter row (``JOB``) keeps the larger values and never
    un-pauses; ``JOB_STATE`` (pause, resume) sets the pause."""
    async with asyncio.timeout(20), pg_store(pg_dsn) as store:
        await store.commit([w_job_state(JobRow(name="j", source="config", paused=True))])
        await store.commit(
            [w_job(JobRow(name="j", source="config", run_count=5, last_scheduled=T0))]
        )
        await store.commit([w_job(JobRow(name="j", source="config", run_count=2))])
        row = (await store.job_rows()).get("j")
        assert row is not None and row.paused and row.run_count == 5 and row.last_scheduled == T0
        await store.commit([w_job_state(JobRow(name="j", source="config", paused=False))])
        row = (await store.job_rows()).get("j")
        assert row is not None and not row.paused and row.run_count == 5


async def test_pruning_keeps_live_runs_and_dead_lettered_ones(pg_dsn: str) -> None:
    """Retention on PostgreSQL deletes old finished runs with their attempts, and keeps live
    runs and runs with dead letters."""
    async with asyncio.timeout(20), pg_store(pg_dsn) as store:
        done = [
            run_row(20 + i, lease=7, state=RunState.SUCCEEDED, finished_at=T0) for i in range(5)
        ]
        live = run_row(30, lease=7)
        kept = run_row(31, lease=7, state=RunState.FAILED, finished_at=T0)
        dlq = DlqEntry(
            id="d" * 32,
            run_id=kept.id,
            job="j",
            target_idx=-1,
            target=None,
            error=RunError(kind=ErrorKind.FATAL, message="x"),
            failed_at=T0,
        )
        await store.commit([w_run(r) for r in (*done, live, kept)] + [w_dlq(dlq)])
        deleted, more, _ = await store.prune_runs_step(PrunePass(before="f" * 32), 100)
        assert (deleted, more) == (5, False)
        assert {r.id for r in await store.runs(RunQuery(limit=100))} == {live.id, kept.id}
        ev = Event(id="0" * 32, name="x", payload=None, created_at=T0)
        await store.commit([w_event(ev)])
        assert (await store.prune_events_step("1" * 32, 10))[:2] == (1, False)
