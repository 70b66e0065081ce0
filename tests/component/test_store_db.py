"""The SQLite store's engine room on a real file: group commit, batches, failures, lock,
schema, pragmas, health (the backend-neutral behaviour is in tests/contract/)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from automationd.errors import LockedError, StoreError
from automationd.records import Attempt, Phase
from automationd.store.rows import w_attempt, w_attempt_pgid
from automationd.store.sqlite.migrate import LATEST_VERSION, MIGRATIONS, migrate
from automationd.store.sqlite.store import DB_NAME, SqliteStore, open_sqlite
from automationd.store.write import Stmt, Write
from automationd.store.writer import Writer
from tests.support.records import bad_write, event_write, run_write


def _rows(store_or_dir: SqliteStore | Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Read the file with a connection of our own (WAL: it sees every committed batch)."""
    path = store_or_dir.path if isinstance(store_or_dir, SqliteStore) else store_or_dir / DB_NAME
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def _attempt(run_id: str, n: int) -> Write:
    return w_attempt(
        Attempt(run_id=run_id, n=n, phase=Phase.PERFORM, target=None, target_idx=-1, started_at=1)
    )


def _slow(seconds: float) -> Callable[[sqlite3.Connection], int]:
    def slow(conn: sqlite3.Connection) -> int:
        time.sleep(seconds)  # holds the writer's thread, like a stalled disk
        return 0

    return slow


async def _until(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    """Wait for ``cond``, looking every 5 ms, for at most ``limit_s``."""
    for _ in range(int(limit_s / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def test_concurrent_writes_group_commit_and_are_visible_after_await(tmp_path: Path) -> None:
    """1,000 concurrent awaited writes share far fewer commits, and each is readable through
    the store's reader as soon as its commit returned."""
    async with asyncio.timeout(10), open_sqlite(tmp_path) as store:
        seen: list[bool] = []

        async def one(i: int) -> None:
            await store.commit([run_write(f"r{i:04d}")])
            seen.append(await store.run(f"r{i:04d}") is not None)

        async with asyncio.TaskGroup() as tg:
            for i in range(1000):
                tg.create_task(one(i))
        assert len(seen) == 1000 and all(seen)
        assert _rows(store, "SELECT count(*) FROM runs") == [(1000,)]
        stats = store.stats
        assert stats["writes"] >= 1000
        assert stats["batches"] < 100, stats
        assert stats["max_batch_size"] >= 100


async def test_same_statement_and_key_collapse_to_the_last_write(tmp_path: Path) -> None:
    """Writes with the same (statement, key) in one batch execute once, with the last params."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        await asyncio.gather(
            store.commit([run_write("a", attempts=n) for n in (1, 2, 3)]),
            store.commit([run_write("b", attempts=10)]),
            store.commit([run_write("a", attempts=4)]),
        )
        assert _rows(store, "SELECT id, attempts FROM runs ORDER BY id") == [("a", 4), ("b", 10)]
        assert store.stats["collapsed"] == 3
        assert store.stats["statements"] == 2


async def test_unkeyed_writes_never_collapse(tmp_path: Path) -> None:
    """Writes without a key all execute, even with identical params."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        unkeyed = run_write("a")._replace(key=None)
        await asyncio.gather(*(store.commit([unkeyed]) for _ in range(5)))
        assert (store.stats["statements"], store.stats["collapsed"]) == (5, 0)
        assert _rows(store, "SELECT count(*) FROM runs") == [(1,)]


async def test_statements_group_by_kind_unless_a_barrier_splits_them(tmp_path: Path) -> None:
    """Without a barrier one statement's rows run together; a barrier keeps submission order.

    1. One batch: attempt (r,1), the pgid of (r,2) WITHOUT a barrier, attempt (r,2): the
       attempt rows run first as one group, so the pgid update finds (r,2).
    2. Same with the pgid update as the barrier it really is: it runs before (r,2) exists.
    Result: pgid 7 vs NULL.
    """
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        pgid = w_attempt_pgid("r", 2, 7)
        await store.commit([_attempt("r", 1), pgid._replace(barrier=False), _attempt("r", 2)])
        assert _rows(store, "SELECT pgid FROM attempts WHERE n=2") == [(7,)]
        await store.commit([_attempt("s", 1), pgid._replace(params=(7, "s", 2)), _attempt("s", 2)])
        assert _rows(store, "SELECT pgid FROM attempts WHERE run_id='s' AND n=2") == [(None,)]


async def test_failed_batch_fails_its_commits_and_the_next_batch_succeeds(tmp_path: Path) -> None:
    """A constraint error rolls back the whole batch and fails every commit in it (logged
    once, counted by kind); the writer goes on and says when it recovered."""
    kinds: list[str] = []
    async with asyncio.timeout(5), open_sqlite(tmp_path, on_error=kinds.append) as store:
        with capture_logs() as logs:
            good = store.commit([event_write("innocent")])
            bad = store.commit([bad_write()])
            results = await asyncio.gather(good, bad, return_exceptions=True)
            assert all(isinstance(r, StoreError) for r in results), results
            assert "NOT NULL constraint failed" in str(results[0])
            assert not store.healthy and store.health_reason == str(results[0])
            await store.commit([event_write("later")])
        assert [e["event"] for e in logs] == ["store.write_failed", "store.write_recovered"]
        assert kinds == ["other"]
        assert store.healthy
        assert _rows(store, "SELECT id FROM events") == [("later",)]
        assert store.stats["failed_batches"] == 1 and store.stats["failed_writes"] == 2


async def test_posted_writes_of_a_failed_batch_are_retried_in_order(tmp_path: Path) -> None:
    """1. In one batch: a refused write told through ``submit_then``, then two posted writes
       of one row and an event.
    2. The batch fails; the refused write's caller hears why at once.
    Result: the posted writes land in a later batch, the row with its last value."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        told: list[BaseException | None] = []
        with capture_logs():
            store.submit_then([bad_write()], told.append)
            store.post([run_write("r", attempts=1)])
            store.post([run_write("r", attempts=2), event_write("e")])
            await _until(lambda: bool(told))
            assert isinstance(told[0], StoreError)
            await _until(lambda: store.stats["writes"] >= 3)
        assert _rows(store, "SELECT id, attempts FROM runs") == [("r", 2)]
        assert _rows(store, "SELECT id FROM events") == [("e",)]
        assert store.healthy


async def test_unhashable_key_fails_its_batch_not_the_writer(tmp_path: Path) -> None:
    """A bug in one batch (an unhashable key) fails that batch only."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        with pytest.raises(StoreError), capture_logs():
            await store.commit([event_write("x")._replace(key=cast(Any, ["unhashable"]))])
        await store.commit([event_write("y")])
        assert _rows(store, "SELECT id FROM events") == [("y",)]


async def test_run_in_transaction_returns_its_value_and_is_ordered(tmp_path: Path) -> None:
    """A function runs after the writes submitted before it, in the same durable batch."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        store.post([event_write("a"), event_write("b")])
        changed = await store.run_in_transaction(
            lambda c: c.execute("DELETE FROM events WHERE id = 'a'").rowcount
        )
        assert changed == 1
        assert _rows(store, "SELECT id FROM events") == [("b",)]


async def test_cancelled_caller_does_not_withdraw_its_write(tmp_path: Path) -> None:
    """Cancelling the task awaiting a commit still leaves the write committed."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(store.commit([event_write("c")]))
            await asyncio.sleep(0)  # let it submit
            task.cancel()
        assert task.cancelled()
        await store.commit([])  # a later batch: everything before it is durable
        assert _rows(store, "SELECT id FROM events") == [("c",)]


async def test_close_flushes_submitted_writes_and_refuses_new_ones(tmp_path: Path) -> None:
    """Leaving the context commits what was posted; submitting afterwards raises StoreError."""
    async with asyncio.timeout(5):
        async with open_sqlite(tmp_path) as store:
            for i in range(50):
                store.post([event_write(f"f{i}")])
        with pytest.raises(StoreError, match="closed"):
            store.post([event_write("late")])
        assert _rows(tmp_path, "SELECT count(*) FROM events") == [(50,)]


async def test_close_keeps_flushing_when_the_closer_is_cancelled(tmp_path: Path) -> None:
    """A cancellation arriving during close still lets the pending writes commit.

    1. A slow function holds the writer; a write is posted behind it; the body leaves.
    2. While the close waits for the flush, its task is cancelled.
    Result: the task ends cancelled and the posted write is on disk."""

    async def body(tg: asyncio.TaskGroup) -> None:
        async with open_sqlite(tmp_path) as store:
            tg.create_task(store.run_in_transaction(_slow(0.4)))
            await asyncio.sleep(0.02)  # the slow batch is on the writer's thread
            store.post([event_write("s")])

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(body(tg))
        await asyncio.sleep(0.15)
        assert not task.done()  # still flushing
        task.cancel()
    assert task.cancelled()
    assert _rows(tmp_path, "SELECT id FROM events") == [("s",)]


async def test_second_open_of_a_state_dir_is_locked(tmp_path: Path) -> None:
    """A second open of one state_dir fails with LockedError naming the dir and the holder's
    pid; the lock is released on close."""
    async with asyncio.timeout(5), open_sqlite(tmp_path):
        with pytest.raises(LockedError) as err:
            async with open_sqlite(tmp_path):
                pass  # pragma: no cover
        assert str(err.value) == (
            f"state directory {tmp_path} is locked by another automationd (pid {os.getpid()})"
        )
    async with asyncio.timeout(5), open_sqlite(tmp_path):
        pass  # released on close


async def test_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    """A database from a newer automationd is refused (twice: the lock was released)."""
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 98}")
    conn.close()
    for _ in range(2):
        with pytest.raises(
            StoreError, match=rf"version {LATEST_VERSION + 98}.*version {LATEST_VERSION}"
        ):
            async with asyncio.timeout(5), open_sqlite(tmp_path):
                pass  # pragma: no cover


def test_migrate_applies_only_missing_steps_in_order(tmp_path: Path) -> None:
    """A v1 database gets only the later steps; a broken step rolls back and keeps the old
    version; misnumbered steps are refused."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn, MIGRATIONS[:1]) == 1
    assert "lease" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert migrate(conn) == LATEST_VERSION
    assert "lease" in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    nxt = LATEST_VERSION + 1
    steps = (*MIGRATIONS, (nxt, "ALTER TABLE jobs ADD COLUMN note TEXT;"))
    assert migrate(conn, steps) == nxt
    conn.execute("INSERT INTO jobs (name, source, note) VALUES ('a', 'api', 'n')")
    bad = (*steps, (nxt + 1, "CREATE TABLE t (x); CREATE TABLE t (x);"))
    with pytest.raises(StoreError, match=f"version {nxt + 1}"):
        migrate(conn, bad)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == nxt
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None
    with pytest.raises(StoreError, match="numbered"):
        migrate(conn, ((1, ""), (3, "")))
    conn.close()


async def test_pragmas_are_set(tmp_path: Path) -> None:
    """The writer runs WAL with synchronous=FULL and no foreign keys; the reader is
    query-only (a write through it fails)."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        got = await store.run_in_transaction(
            lambda c: [
                c.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
        )
        assert got == ["wal", 2, 0, 5000]
        assert [tuple(r) for r in await store._fetchall("PRAGMA query_only", ())] == [(1,)]
        with pytest.raises(StoreError, match="readonly"):
            await store._fetchall("DELETE FROM events", ())


async def test_probe_reports_a_stalled_writer_once_and_recovers(tmp_path: Path) -> None:
    """A batch stuck in a slow function makes the store unhealthy (logged once, with the
    reason), then healthy again once it returns."""
    async with (
        asyncio.timeout(5),
        open_sqlite(tmp_path, health_interval=0.02, health_timeout=0.1) as store,
    ):
        with capture_logs() as logs:
            async with asyncio.TaskGroup() as tg:
                stuck = tg.create_task(store.run_in_transaction(_slow(0.6)))
                await _until(lambda: not store.healthy)
                assert store.health_reason is not None and "stalled" in store.health_reason
            assert stuck.result() == 0
            async with asyncio.timeout(2):
                await store.wait_healthy()
        events = [e["event"] for e in logs]
        assert events == ["store.unhealthy", "store.healthy"], logs
        assert store.health_reason is None


async def test_a_dead_committer_fails_writes_instead_of_hanging(tmp_path: Path) -> None:
    """A committer that cannot start a batch (its thread pool gone) fails the batch's
    commits with StoreError, and the store says it is unhealthy."""

    class Gone:
        def start(self, steps: Any) -> asyncio.Future[list[Any]]:
            raise RuntimeError("cannot schedule new futures after shutdown")

    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        writer: Writer = store._writer
        real, writer._committer = writer._committer, Gone()
        try:
            with capture_logs(), pytest.raises(StoreError, match="after shutdown"):
                await store.commit([event_write("x")])
            assert not store.healthy
        finally:
            writer._committer = real
        await store.commit([event_write("y")])
        assert store.healthy


async def test_a_closed_reader_fails_reads_and_the_probe_says_so(tmp_path: Path) -> None:
    """With the reader connection gone (its thread stopped), reads raise ``StoreError``
    (kind ``closed``) instead of hanging, and the health probe reports it once."""
    async with (
        asyncio.timeout(5),
        open_sqlite(tmp_path, health_interval=0.02, health_timeout=0.1) as store,
    ):
        with capture_logs() as logs:
            await store._reader.close()
            with pytest.raises(StoreError, match="reader closed") as err:
                await store.run("r")
            assert err.value.kind == "closed"
            await _until(lambda: not store.healthy)
            await asyncio.sleep(0.1)  # more probes: still one line
        assert "reader closed" in (store.health_reason or "")
        assert [e["event"] for e in logs].count("store.unhealthy") == 1


async def test_an_error_in_the_body_propagates_unwrapped_after_a_flush(tmp_path: Path) -> None:
    """An exception raised inside the context comes out as itself, and posted writes land."""
    async with asyncio.timeout(5):
        with pytest.raises(KeyError):
            async with open_sqlite(tmp_path) as store:
                store.post([event_write("kept")])
                raise KeyError("boom")
    assert _rows(tmp_path, "SELECT id FROM events") == [("kept",)]


def test_every_statement_has_sqlite_text() -> None:
    """The SQLite backend maps every ``Stmt`` to its SQL."""
    from automationd.store.sqlite.sql import SQL

    assert set(SQL) == set(Stmt)
