"""The store's engine room on a real SQLite file: group commit, batches, lock, schema, health."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, cast

import pytest
from automationd.store.db import DB_NAME, open_database
from automationd.store.migrate import LATEST_VERSION, MIGRATIONS, migrate
from structlog.testing import capture_logs

from automationd.errors import LockedError, StoreError
from automationd.store.writer import Write

INSERT_JOB = "INSERT INTO jobs (name, source, run_count) VALUES (?, 'api', ?)"
UPSERT_JOB = (
    "INSERT INTO jobs (name, source, run_count) VALUES (?, 'api', ?) "
    "ON CONFLICT (name) DO UPDATE SET run_count = excluded.run_count"
)
INSERT_EVENT = "INSERT INTO events (id, name, created_at) VALUES (?, 'test', 0)"
SLOW_EVENT = "INSERT INTO events (id, name, created_at) VALUES (?, 'slow', slow(?))"


async def test_concurrent_writes_group_commit_and_are_visible_after_await(tmp_path: Path) -> None:
    """1,000 concurrent awaited writes share far fewer commits, and each is readable once acked."""
    async with asyncio.timeout(10), open_database(tmp_path) as db:
        seen: list[bool] = []

        async def one(i: int) -> None:
            await db.write([Write(INSERT_EVENT, (f"e{i:04d}",))])
            seen.append(await db.fetchval("SELECT 1 FROM events WHERE id = ?", (f"e{i:04d}",)) == 1)

        async with asyncio.TaskGroup() as tg:
            for i in range(1000):
                tg.create_task(one(i))
        assert len(seen) == 1000 and all(seen)
        assert await db.fetchval("SELECT count(*) FROM events") == 1000
        stats = db.stats
        assert stats["writes"] >= 1000
        assert stats["batches"] < 100, stats
        assert stats["max_batch_size"] >= 100


async def test_same_sql_and_key_collapse_to_the_last_write(tmp_path: Path) -> None:
    """Writes with the same (sql, key) in one batch execute once, with the last params."""
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        futures = [
            db.submit([Write(UPSERT_JOB, ("a", n), key="a") for n in (1, 2, 3)]),
            db.submit([Write(UPSERT_JOB, ("b", 10), key="b")]),
            db.submit([Write(UPSERT_JOB, ("a", 4), key="a")]),
        ]
        await asyncio.gather(*futures)
        rows = await db.fetchall("SELECT name, run_count FROM jobs ORDER BY name")
        assert [tuple(r) for r in rows] == [("a", 4), ("b", 10)]
        assert db.stats["collapsed"] == 3
        assert db.stats["statements"] == 2


async def test_unkeyed_writes_of_one_sql_all_execute(tmp_path: Path) -> None:
    """Writes without a key never collapse, even with identical params."""
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        bump = "UPDATE jobs SET run_count = run_count + 1 WHERE name = ?"
        await db.write([Write(INSERT_JOB, ("a", 0))])
        await asyncio.gather(*(db.submit([Write(bump, ("a",))]) for _ in range(5)))
        assert await db.fetchval("SELECT run_count FROM jobs WHERE name = 'a'") == 5


async def test_statements_group_by_sql_unless_a_barrier_splits_them(tmp_path: Path) -> None:
    """Without a barrier, one sql's rows run together; a barrier keeps submission order.

    1. Batch: insert a, count-into-a, insert b (no barrier) -> the count runs after both inserts.
    2. Same with barrier=True on the count -> it runs between them.
    Result: 2 vs 1.
    """
    count = "UPDATE jobs SET run_count = (SELECT count(*) FROM jobs) WHERE name = ?"
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        await asyncio.gather(
            db.submit([Write(INSERT_JOB, ("a", 0))]),
            db.submit([Write(count, ("a",))]),
            db.submit([Write(INSERT_JOB, ("b", 0))]),
        )
        assert await db.fetchval("SELECT run_count FROM jobs WHERE name = 'a'") == 2
        await db.write([Write("DELETE FROM jobs", ())])
        await asyncio.gather(
            db.submit([Write(INSERT_JOB, ("a", 0))]),
            db.submit([Write(count, ("a",), barrier=True)]),
            db.submit([Write(INSERT_JOB, ("b", 0))]),
        )
        assert await db.fetchval("SELECT run_count FROM jobs WHERE name = 'a'") == 1


async def test_failed_batch_fails_every_write_and_the_next_batch_succeeds(tmp_path: Path) -> None:
    """A constraint error rolls back the batch and fails all its futures; the writer goes on."""
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        await db.write([Write(INSERT_EVENT, ("dup",))])
        with capture_logs() as logs:
            good = db.submit([Write(INSERT_EVENT, ("innocent",))])
            bad = db.submit([Write(INSERT_EVENT, ("dup",))])
            results = await asyncio.gather(good, bad, return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results), results
        assert "UNIQUE constraint failed" in str(results[0])
        assert [e["event"] for e in logs] == ["store.batch_failed"]
        assert await db.fetchval("SELECT count(*) FROM events WHERE id = 'innocent'") == 0
        await db.write([Write(INSERT_EVENT, ("later",))])
        assert await db.fetchval("SELECT count(*) FROM events") == 2
        assert db.stats["failed_batches"] == 1 and db.stats["failed_writes"] == 2


async def test_unhashable_key_fails_its_batch_not_the_writer(tmp_path: Path) -> None:
    """A bug in one batch (unhashable key) fails that batch only."""
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        with pytest.raises(StoreError), capture_logs():
            await db.write([Write(INSERT_EVENT, ("x",), key=cast(Any, ["unhashable"]))])
        await db.write([Write(INSERT_EVENT, ("y",))])
        assert await db.fetchval("SELECT id FROM events") == "y"


async def test_run_in_transaction_returns_its_value_and_is_ordered(tmp_path: Path) -> None:
    """A function runs after the writes submitted before it, in the same durable batch."""
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        first = db.submit([Write(INSERT_EVENT, ("a",)), Write(INSERT_EVENT, ("b",))])
        changed = await db.run_in_transaction(
            lambda c: c.execute("DELETE FROM events WHERE id = 'a'").rowcount
        )
        await first
        assert changed == 1
        assert [r[0] for r in await db.fetchall("SELECT id FROM events")] == ["b"]


async def test_cancelled_caller_does_not_withdraw_its_write(tmp_path: Path) -> None:
    """Cancelling the task awaiting a write still leaves the write committed."""
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(db.write([Write(INSERT_EVENT, ("c",))]))
            await asyncio.sleep(0)  # let it submit
            task.cancel()
        assert task.cancelled()
        await db.write([])  # a later batch: everything before it is durable
        assert await db.fetchval("SELECT id FROM events") == "c"


async def test_close_flushes_submitted_writes_and_refuses_new_ones(tmp_path: Path) -> None:
    """Leaving the context commits what was submitted; submitting afterwards raises StoreError."""
    async with asyncio.timeout(5):
        async with open_database(tmp_path) as db:
            futures = [db.submit([Write(INSERT_EVENT, (f"f{i}",))]) for i in range(50)]
        assert all(f.done() and f.exception() is None for f in futures)
        with pytest.raises(StoreError, match="closed"):
            db.submit([Write(INSERT_EVENT, ("late",))])
        async with open_database(tmp_path) as db2:
            assert await db2.fetchval("SELECT count(*) FROM events") == 50


async def test_close_keeps_flushing_when_the_closer_is_cancelled(tmp_path: Path) -> None:
    """A cancellation arriving during close still lets the pending slow write commit."""

    async def body() -> None:
        async with open_database(tmp_path) as db:
            await db.run_in_transaction(lambda c: c.create_function("slow", 1, _slow))
            db.submit([Write(SLOW_EVENT, ("s", 0.3))])

    async with asyncio.timeout(5):
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(body())
            await asyncio.sleep(0.1)
            task.cancel()
        assert task.cancelled()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("SELECT id FROM events").fetchall() == [("s",)]
    conn.close()


async def test_second_open_of_a_state_dir_is_locked(tmp_path: Path) -> None:
    """A second open of one state_dir fails with LockedError naming the dir and the holder's pid."""
    async with asyncio.timeout(5), open_database(tmp_path):
        with pytest.raises(LockedError) as err:
            async with open_database(tmp_path):
                pass  # pragma: no cover
        assert str(err.value) == (
            f"state directory {tmp_path} is locked by another automationd (pid {os.getpid()})"
        )
    async with asyncio.timeout(5), open_database(tmp_path):
        pass  # released on close


async def test_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    """A database from a newer automationd is refused, and the lock is released again."""
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 98}")
    conn.close()
    for _ in range(2):
        with pytest.raises(
            StoreError, match=rf"version {LATEST_VERSION + 98}.*version {LATEST_VERSION}"
        ):
            async with asyncio.timeout(5), open_database(tmp_path):
                pass  # pragma: no cover


def test_migrate_applies_only_missing_steps_in_order(tmp_path: Path) -> None:
    """A v1 database gets only step 2; a broken step rolls back and keeps the old version."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == 1
    steps = (*MIGRATIONS, (2, "ALTER TABLE jobs ADD COLUMN note TEXT;"))
    assert migrate(conn, steps) == 2
    conn.execute("INSERT INTO jobs (name, source, note) VALUES ('a', 'api', 'n')")
    bad = (*steps, (3, "CREATE TABLE t (x); CREATE TABLE t (x);"))
    with pytest.raises(StoreError, match="version 3"):
        migrate(conn, bad)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None
    conn.close()


async def test_pragmas_are_set(tmp_path: Path) -> None:
    """The writer runs WAL with synchronous=FULL and no foreign keys; the reader is query-only."""
    async with asyncio.timeout(5), open_database(tmp_path) as db:
        got = await db.run_in_transaction(
            lambda c: [
                c.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
        )
        assert got == ["wal", 2, 0, 5000]
        assert await db.fetchval("PRAGMA query_only") == 1
        with pytest.raises(StoreError, match="readonly"):
            await db.fetchall("DELETE FROM events")


async def test_probe_reports_a_stalled_writer_once_and_recovers(tmp_path: Path) -> None:
    """A write stuck in a slow SQL function makes the store unhealthy (logged once), then not."""
    async with (
        asyncio.timeout(5),
        open_database(tmp_path, health_interval=0.02, health_timeout=0.1) as db,
    ):
        await db.run_in_transaction(lambda c: c.create_function("slow", 1, _slow))
        with capture_logs() as logs:
            stuck = db.submit([Write(SLOW_EVENT, ("s", 0.6))])
            await db.wait_health(False)
            assert db.health_reason is not None and "stalled" in db.health_reason
            await stuck
            await db.wait_health(True)
        events = [e["event"] for e in logs]
        assert events == ["store.unhealthy", "store.healthy"], logs
        assert db.health_reason is None


async def test_writes_fail_fast_when_the_connection_thread_is_dead(tmp_path: Path) -> None:
    """With aiosqlite's thread gone, writes raise StoreError (no hang) and health says why."""
    async with (
        asyncio.timeout(5),
        open_database(tmp_path, health_interval=0.02, health_timeout=0.1) as db,
    ):
        with capture_logs() as logs:
            stopped = db._wworker._conn.stop()  # simulate the thread dying behind our back
            assert stopped is not None
            await stopped
            with pytest.raises(StoreError, match="not running"):
                await db.write([Write(INSERT_EVENT, ("x",))])
            await db.wait_health(False)
        assert db.health_reason == "writer connection thread died"
        assert [e["event"] for e in logs].count("store.unhealthy") == 1


def _slow(seconds: float) -> int:
    time.sleep(seconds)
    return 0


async def test_probe_fails_calls_stuck_on_a_dead_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read waiting on a connection thread that died fails with StoreError instead of hanging."""

    class DeadThread:
        def is_alive(self) -> bool:
            return False

    async with (
        asyncio.timeout(5),
        open_database(tmp_path, health_interval=0.02, health_timeout=0.1) as db,
    ):

        async def thread_dies() -> None:
            await asyncio.sleep(0.01)  # the long read is on the reader thread by now
            monkeypatch.setattr(db._rworker._conn, "_thread", DeadThread())

        try:
            with capture_logs(), pytest.raises(ExceptionGroup) as err:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(thread_dies())
                    await db.fetchval(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                        " WHERE x < 1000000) SELECT count(*) FROM c"
                    )
        finally:
            monkeypatch.undo()  # the real thread must be closed on exit
        assert err.group_contains(StoreError, match="reader connection thread died")
        assert db.health_reason == "reader connection thread died"


async def test_an_error_in_the_body_propagates_unwrapped_after_a_flush(tmp_path: Path) -> None:
    """An exception raised inside the context comes out as itself, and pending writes still land."""
    async with asyncio.timeout(5):
        with pytest.raises(KeyError):
            async with open_database(tmp_path) as db:
                db.submit([Write(INSERT_EVENT, ("kept",))])
                raise KeyError("boom")
        async with open_database(tmp_path) as db:
            assert await db.fetchval("SELECT id FROM events") == "kept"
