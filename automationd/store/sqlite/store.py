"""The SQLite store: one file in the state directory, no server (the embedded default).

Shape: ``open_sqlite(state_dir)`` takes the state directory's lock and opens
``automationd.db`` twice:

- the WRITER, a plain ``sqlite3`` connection that lives on a thread of its own
  (store/sqlite/thread.py) and runs migrations, then every batch of the group-commit writer
  (store/writer.py);
- the READER, an aiosqlite connection (``PRAGMA query_only=1``), so reads never queue behind
  a big batch. Reads use aiosqlite's public ``execute_fetchall``: one thread hop per query.

Why the writer is not an aiosqlite connection: a batch is ``BEGIN``, one multi-row statement
per kind of row, ``COMMIT``. aiosqlite's public API costs a thread hop per statement
(``execute``, ``executemany``, ``commit``): 4 to 6 hops per batch, each ≈ 30 to 60 µs of queue
hand-off and loop wake-up, and as many GIL hand-overs. The writer's own thread runs the
whole batch (store/sqlite/sql.py ``execute_plan``) in ONE hop: a queue put there, a
``call_soon_threadsafe`` back (lighter than ``run_in_executor``, see thread.py); the
one-client trigger latency is what that buys.

Durability: WAL with ``synchronous=FULL`` fsyncs the log on every COMMIT, and a write is
reported only after its COMMIT returned. WAL readers see every transaction committed before
their read began, so a read issued after a write was reported sees it.

Damage (store/sqlite/check.py): an existing file is checked before it is opened (quick_check,
then every job row and the newest rows of each table decoded) and a damaged one is refused in
one line naming the ways back. A read that still meets a row SQLite cannot hand over as text
(not UTF-8) is run again on a connection that takes text as bytes, and the row comes back
repaired (U+FFFD) and marked, so a listing reports that row instead of failing.

Health (store/health.py, shared with PostgreSQL): every ``health_interval`` a probe sends an
empty batch through the writer (it runs ``SELECT 1`` on the writer's thread) and a ``SELECT
1`` through the reader, each under ``health_timeout``. A stalled thread or a failing batch
makes the store unhealthy with a reason (``store: disk full``) until both pass again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import structlog

from automationd.clock import Clock, SystemClock
from automationd.errors import StoreError
from automationd.store.api import PrunePass
from automationd.store.batch import Step
from automationd.store.health import StoreHealth
from automationd.store.lock import StateDirLock
from automationd.store.reads import SqlReads
from automationd.store.rows import Row
from automationd.store.sqlite import prune
from automationd.store.sqlite.backup import backup_into
from automationd.store.sqlite.check import (
    check_problems,
    damaged_message,
    read_repaired,
    startup_problems,
)
from automationd.store.sqlite.migrate import migrate
from automationd.store.sqlite.sql import execute_plan, store_error
from automationd.store.sqlite.thread import WriterThread
from automationd.store.write import Observer, Then, Write
from automationd.store.writer import MAX_BATCH, Writer

__all__ = ["DB_NAME", "SqliteStore", "open_sqlite"]

T = TypeVar("T")
DB_NAME = "automationd.db"
BUSY_TIMEOUT_MS = 5000

log = structlog.get_logger("automationd.store")


class _Committer:
    """The writer connection on its own thread: one hop per batch."""

    def __init__(self, conn: sqlite3.Connection, thread: WriterThread) -> None:
        self._conn = conn
        self._thread = thread

    def start(self, steps: Sequence[Step]) -> asyncio.Future[list[Any]]:
        return self._thread.call(partial(execute_plan, self._conn, steps))


class SqliteStore(SqlReads):
    """``Store`` (store/api.py) on one SQLite file. Build it with ``open_sqlite``."""

    def __init__(
        self,
        path: Path,
        writer: Writer,
        reader: aiosqlite.Connection,
        clock: Clock,
        *,
        schema_version: int,
        health_interval: float,
        health_timeout: float,
    ) -> None:
        super().__init__(self._fetchall, glob=True)
        self.path = path
        self.schema_version = schema_version
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self.health = StoreHealth(
            writer, clock, self._ping, interval=health_interval, timeout=health_timeout
        )

    # -- health (store/health.py) ---------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.health.healthy

    @property
    def health_reason(self) -> str | None:
        return self.health.reason

    async def wait_healthy(self) -> None:
        await self.health.wait_healthy()

    async def _ping(self) -> None:
        await self._fetchall("SELECT 1", ())

    # -- writes ---------------------------------------------------------------------------
    def post(self, writes: Sequence[Write]) -> None:
        self._writer.post(writes)

    def submit_then(
        self, writes: Sequence[Write], then: Then, *, retry: bool = False, defer: bool = False
    ) -> None:
        self._writer.submit_then(writes, then, retry=retry, defer=defer)

    async def commit(self, writes: Sequence[Write]) -> None:
        await self._writer.submit(writes)

    def watch(self, observer: Observer | None) -> None:
        self._writer.observer = observer

    async def run_in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer's thread inside the next batch's transaction: for
        what a ``Write`` cannot say (rowcounts, ``DELETE … LIMIT`` sweeps). A barrier,
        durable when this returns; it must be quick and must not raise for expected
        outcomes (an exception fails its whole batch)."""
        result: T = await self._writer.call(fn)
        return result

    @property
    def stats(self) -> dict[str, Any]:
        w = self._writer
        return {
            "batches": w.batches,
            "writes": w.writes,
            "statements": w.statements,
            "collapsed": w.collapsed,
            "failed_batches": w.failed_batches,
            "failed_writes": w.failed_writes,
            "last_batch_size": w.last_batch_size,
            "max_batch_size": w.max_batch_size,
            "pending": w.pending,
            "commit_seconds": w.commit_seconds,
            "healthy": self.healthy,
        }

    # -- reads ----------------------------------------------------------------------------
    async def _fetchall(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        try:
            rows: Sequence[Row] = await self._reader.execute_fetchall(sql, params)  # type: ignore[assignment]
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith("Could not decode to UTF-8"):
                raise store_error(exc, "read") from exc
            return await asyncio.to_thread(read_repaired, self.path, sql, params)
        except sqlite3.Error as exc:
            raise store_error(exc, "read") from exc
        except ValueError as exc:  # aiosqlite: the connection is closed
            raise StoreError(f"store: reader closed ({exc})", kind="closed") from exc
        return rows

    async def check(self) -> list[str]:
        """Everything ``check-store`` checks (store/sqlite/check.py), on a thread of its own:
        its reads take as long as the file is big and must not hold up the reader."""
        return await asyncio.to_thread(check_problems, self.path)

    # -- retention ------------------------------------------------------------------------
    async def prune_runs_step(self, prune_pass: PrunePass, batch: int) -> tuple[int, bool, float]:
        return await self.run_in_transaction(
            partial(prune.runs_step, prune_pass=prune_pass, batch=batch, clock=self._clock)
        )

    async def prune_events_step(self, before: str, batch: int) -> tuple[int, bool, float]:
        return await self.run_in_transaction(
            partial(prune.events_step, before=before, batch=batch, clock=self._clock)
        )

    async def prune_audit_step(self, before: str, batch: int) -> tuple[int, bool, float]:
        return await self.run_in_transaction(
            partial(prune.audit_step, before=before, batch=batch, clock=self._clock)
        )

    # -- backup ---------------------------------------------------------------------------
    async def backup(self, path: str) -> int:
        """``VACUUM INTO`` a new file, on a connection of its own in a worker thread: a read
        transaction, so the writer goes on committing (WAL) while the copy is made."""
        return await asyncio.to_thread(backup_into, self.path, Path(path))


def _open_writer(path: Path) -> tuple[sqlite3.Connection, int]:
    """On the writer's thread: connect, pragmas, migrate."""
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}", kind="io") from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch the database to WAL (journal_mode={mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn, migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        if store_error(exc).kind == "corrupt":
            raise StoreError(damaged_message(path, [str(exc)]), kind="corrupt") from exc
        raise StoreError(f"cannot open {path}: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        conn.close()
        raise


async def _open_reader(path: Path) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}", kind="io") from exc
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA query_only=1")
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except BaseException:
        await conn.close()
        raise
    return conn


@contextlib.asynccontextmanager
async def open_sqlite(
    state_dir: Path,
    *,
    health_interval: float = 1.0,
    health_timeout: float = 2.0,
    close_timeout: float = 10.0,
    max_batch: int = MAX_BATCH,
    clock: Clock | None = None,
    on_error: Callable[[str], None] | None = None,
    quiet_after: float = 0.0,
) -> AsyncIterator[SqliteStore]:
    """Lock ``state_dir``, open/migrate ``automationd.db``, run the health probe.

    On exit: flush pending writes (up to ``close_timeout``, even if cancelled), stop the probe,
    close both connections, release the lock. Raises ``LockedError`` if another daemon holds
    the directory and ``StoreError`` if the database cannot be opened or is too new.
    """
    clock = clock or SystemClock()
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = StateDirLock.acquire(state_dir)
    except OSError as exc:
        raise StoreError(f"cannot use state directory {state_dir}: {exc}", kind="io") from exc
    path = state_dir / DB_NAME
    thread = WriterThread()
    try:
        if path.exists():  # a damaged file is refused before anything writes to it
            problems = await thread.call(partial(startup_problems, path))
            if problems:
                raise StoreError(damaged_message(path, problems), kind="corrupt")
        conn, version = await thread.call(partial(_open_writer, path))
        try:
            reader = await _open_reader(path)
            try:
                store_ref: list[SqliteStore] = []
                writer = Writer(
                    _Committer(conn, thread),
                    clock,
                    max_batch=max_batch,
                    on_error=on_error,
                    on_health=lambda: store_ref[0].health.changed() if store_ref else None,
                    quiet_after=quiet_after,
                )
                store = SqliteStore(
                    path,
                    writer,
                    reader,
                    clock,
                    schema_version=version,
                    health_interval=health_interval,
                    health_timeout=health_timeout,
                )
                store_ref.append(store)
                body_error: BaseException | None = None
                async with asyncio.TaskGroup() as tg:
                    probe = tg.create_task(store.health.probe_loop(), name="store:probe")
                    try:
                        yield store
                    except BaseException as exc:
                        # Re-raised below, unwrapped: the TaskGroup would turn the caller's own
                        # error into an ExceptionGroup, which is ours to hide.
                        body_error = exc
                    finally:
                        probe.cancel()
                        await _flush(writer, close_timeout)
                stats = store.stats  # a warning only when something was lost or broke
                bad = stats.get("failed_writes") or not stats.get("healthy", True)
                (log.warning if bad else log.info)("store.closed", path=str(path), **stats)
                if body_error is not None:
                    raise body_error
            finally:
                await reader.close()
        finally:
            await thread.call(conn.close)
    finally:
        thread.stop()
        lock.release()


async def _flush(writer: Writer, limit_s: float) -> None:
    """Commit what was submitted (up to ``limit_s``, even if we are cancelled meanwhile)."""
    writer.close()
    deadline = asyncio.get_running_loop().time() + limit_s
    cancelled = False
    while not writer.drained.done():
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(writer.drained)
        except TimeoutError:
            failed = writer.abandon("the store closed before this write committed")
            log.error("store.flush_timeout", timeout_s=limit_s, failed_writes=failed)
            break
        except asyncio.CancelledError:
            cancelled = True  # acked-or-not must be decided by the flush; re-raised below
    if cancelled:
        raise asyncio.CancelledError
