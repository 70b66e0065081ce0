"""The SQLite store's engine room: connections, pragmas, group-commit writes, reads, health.

Shape: ``open_database(state_dir)`` takes the state directory's lock, opens
``automationd.db`` twice with aiosqlite (a WRITER connection that owns every write and runs
migrations, and a READ-ONLY connection, ``PRAGMA query_only=1``, so reads never queue behind
a big batch) and starts two tasks in its own TaskGroup: the writer (``writer.py``, which
documents the group-commit rules) and the health probe.

Durability: WAL with ``synchronous=FULL`` fsyncs the log on every COMMIT, and a write's future
resolves only after its COMMIT returned. WAL readers see every transaction committed before
their read began, so a read issued after a write's future resolved sees that write.

Health: every ``health_interval`` the probe checks both connection threads are alive and sends
an empty entry through the writer (it runs ``SELECT 1`` on the writer thread, or rides along
in the current batch) under ``asyncio.timeout(health_timeout)``. Failure flips ``healthy`` to
False with a ``health_reason`` (logged once per transition); the next successful probe flips it
back. A dead thread can never answer, so the probe also fails whatever was waiting on it:
writes and reads fail with ``StoreError`` instead of hanging.

aiosqlite has no public "run this function on your thread" call, so ``_Worker`` uses four of
its internals (``_tx``, ``_connection``, ``_running``, ``_thread``; checked against 0.22, and
older releases where the Connection itself was the Thread are handled). This is exactly what
aiosqlite's own ``_execute`` does, but it hands us a plain future we can track, fail and
shield. One hop per batch and per read is the point of owning that call.
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
from automationd.store.lock import StateDirLock
from automationd.store.migrate import migrate
from automationd.store.writer import MAX_BATCH, Then, Write, Writer

__all__ = ["DB_NAME", "Database", "Write", "open_database"]

T = TypeVar("T")
DB_NAME = "automationd.db"
BUSY_TIMEOUT_MS = 5000

log = structlog.get_logger("automationd.store")


class _Worker:
    """One aiosqlite connection seen as "run fn(conn) on your thread, give me a future"."""

    def __init__(self, conn: aiosqlite.Connection, name: str) -> None:
        self._conn = conn
        self.name = name
        self._inflight: set[asyncio.Future[Any]] = set()

    @property
    def alive(self) -> bool:
        thread: Any = getattr(self._conn, "_thread", self._conn)  # before 0.21 it WAS the thread
        return bool(self._conn._running and thread.is_alive())

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        raw = self._conn._connection
        if raw is None or not self.alive:
            raise StoreError(f"the store's {self.name} connection thread is not running")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._conn._tx.put_nowait((fut, partial(fn, raw)))
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return fut

    def abandon(self, reason: str) -> int:
        """Fail every call still waiting on this (dead) thread."""
        stuck = [f for f in self._inflight if not f.done()]
        for fut in stuck:
            fut.set_exception(StoreError(reason))
        return len(stuck)

    async def close(self, limit_s: float) -> None:
        if not self.alive:
            return
        try:
            async with asyncio.timeout(limit_s):
                await self._conn.close()
        except TimeoutError:
            log.error("store.close_timeout", connection=self.name, timeout_s=limit_s)
        except (sqlite3.Error, ValueError) as exc:
            log.error("store.close_failed", connection=self.name, error=str(exc))


class Database:
    """The handle the queries are written on. Build it with ``open_database``."""

    def __init__(
        self,
        path: Path,
        writer: Writer,
        workers: tuple[_Worker, _Worker],
        clock: Clock,
        *,
        schema_version: int,
        health_interval: float,
        health_timeout: float,
    ) -> None:
        self.path = path
        self.schema_version = schema_version
        self.healthy = True
        self.health_reason: str | None = None
        self._writer = writer
        self._wworker, self._rworker = workers
        self._clock = clock
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        self._probe: asyncio.Future[None] | None = None
        self._health_events = {True: asyncio.Event(), False: asyncio.Event()}
        self._health_events[True].set()
        self._tasks: list[asyncio.Task[None]] = []

    # -- writes ---------------------------------------------------------------------------

    def submit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        """Enqueue now (no await); the future resolves once the writes are durable.

        Cancelling whoever awaits the future does not withdraw the writes. Raises
        ``StoreError`` at once when the store is closing. The future fails with
        ``StoreError`` when its batch fails; await it (or add a done callback).
        """
        return self._writer.submit(writes)

    def submit_then(self, writes: Sequence[Write], then: Then) -> None:
        """Enqueue now; once the batch settles, call ``then(None)`` (durable) or
        ``then(StoreError)`` directly from the settlement: no future, no scheduled callback."""
        self._writer.submit_then(writes, then)

    def post(self, writes: Sequence[Write]) -> None:
        """Enqueue writes nobody awaits (no future); a failed batch is logged by the writer.

        Ordering with later submissions is kept exactly as for ``submit``.
        """
        self._writer.post(writes)

    async def write(self, writes: Sequence[Write]) -> None:
        """Submit and wait until durable (``StoreError`` if the batch failed)."""
        await self._writer.submit(writes)

    async def run_in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer thread inside the next batch's transaction.

        For what ``Write`` cannot say: rowcounts, conditional updates, ``DELETE … LIMIT``
        sweeps. ``fn`` is a barrier (ordered after everything submitted before it) and is
        durable when this returns. It must be quick and must not raise for expected
        outcomes: an exception fails every write in its batch, like any failed statement.
        """
        return await self._writer.call(fn)

    # -- reads ----------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = await self._read(partial(_fetchall, sql=sql, params=params))
        return rows

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = await self._read(partial(_fetchone, sql=sql, params=params))
        return row

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._rworker.call(fn)
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {type(exc).__name__}: {exc}") from exc

    # -- introspection --------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Writer counters: batches, writes, statements (after collapse), collapsed, …"""
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
            "last_commit_seconds": w.last_commit_seconds,
            "healthy": self.healthy,
        }

    # -- health ---------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            await self._clock.sleep_until(self._clock.monotonic() + self._health_interval)
            self._set_health(await self._probe_once())

    async def _probe_once(self) -> str | None:
        for worker in (self._wworker, self._rworker):
            if not worker.alive:
                reason = f"{worker.name} connection thread died"
                worker.abandon(f"the store's {reason}")
                return reason
        if self._probe is None or self._probe.done():
            try:
                self._probe = self._writer.submit(())
            except StoreError as exc:
                return str(exc)
            self._probe.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(self._health_timeout):
                await asyncio.shield(self._probe)
        except TimeoutError:
            return f"write probe did not finish within {self._health_timeout:g}s (writer stalled)"
        except StoreError as exc:
            return f"write probe failed: {exc}"
        return None

    async def wait_health(self, healthy: bool) -> None:
        """Return once ``self.healthy == healthy`` (for watchdogs and tests; no polling)."""
        await self._health_events[healthy].wait()

    def _set_health(self, reason: str | None) -> None:
        self.health_reason = reason
        healthy = reason is None
        if healthy == self.healthy:
            return
        self.healthy = healthy
        self._health_events[healthy].set()
        self._health_events[not healthy].clear()
        if healthy:
            log.info("store.healthy")
        else:
            log.error("store.unhealthy", reason=reason)

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self, tg: asyncio.TaskGroup) -> None:
        self._tasks = [
            tg.create_task(self._writer.run(), name="store:writer"),
            tg.create_task(self._probe_loop(), name="store:probe"),
        ]

    async def _shutdown(self, limit_s: float) -> None:
        """Flush what was submitted (up to ``limit_s``, even if we are cancelled), then stop."""
        writer_task, probe_task = self._tasks
        probe_task.cancel()
        self._writer.close()
        deadline = asyncio.get_running_loop().time() + limit_s
        cancelled = False
        while not self._writer.drained.done():
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(self._writer.drained)
            except TimeoutError:
                failed = self._writer.fail_pending("the store closed before this write committed")
                log.error("store.flush_timeout", timeout_s=limit_s, failed_writes=failed)
                writer_task.cancel()
                break
            except asyncio.CancelledError:
                cancelled = True  # acked-or-not must be decided by the flush; re-raised below
        if cancelled:
            raise asyncio.CancelledError


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _fetchone(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
    cursor = conn.execute(sql, params)
    row: sqlite3.Row | None = cursor.fetchone()
    cursor.close()  # reset the statement now: an open one would pin the WAL read snapshot
    return row


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # a probe nobody awaits any more must not log "never retrieved"


def _setup_writer(conn: sqlite3.Connection) -> int:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"could not switch the database to WAL (journal_mode={mode})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=OFF")
    return migrate(conn)


def _setup_reader(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA query_only=1")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.row_factory = sqlite3.Row


async def _open_worker(
    path: Path, name: str, setup: Callable[[sqlite3.Connection], T]
) -> tuple[_Worker, T]:
    conn = aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        await conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    worker = _Worker(conn, name)
    try:
        result = await worker.call(setup)
    except BaseException as exc:
        await worker.close(5.0)
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot open {path}: {type(exc).__name__}: {exc}") from exc
        raise
    return worker, result


@contextlib.asynccontextmanager
async def open_database(
    state_dir: Path,
    *,
    health_interval: float = 1.0,
    health_timeout: float = 2.0,
    close_timeout: float = 10.0,
    max_batch: int = MAX_BATCH,
    clock: Clock | None = None,
) -> AsyncIterator[Database]:
    """Lock ``state_dir``, open/migrate ``automationd.db``, run the writer and probe.

    On exit: flush pending writes (up to ``close_timeout``), stop the tasks, close both
    connections, release the lock. Raises ``LockedError`` if another daemon holds the
    directory and ``StoreError`` if the database cannot be opened or is too new.
    """
    clock = clock or SystemClock()
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = StateDirLock.acquire(state_dir)
    except OSError as exc:
        raise StoreError(f"cannot use state directory {state_dir}: {exc}") from exc
    path = state_dir / DB_NAME
    try:
        async with contextlib.AsyncExitStack() as stack:
            wworker, version = await _open_worker(path, "writer", _setup_writer)
            stack.push_async_callback(wworker.close, close_timeout)
            rworker, _ = await _open_worker(path, "reader", _setup_reader)
            stack.push_async_callback(rworker.close, close_timeout)
            db = Database(
                path,
                Writer(wworker, clock, max_batch=max_batch),
                (wworker, rworker),
                clock,
                schema_version=version,
                health_interval=health_interval,
                health_timeout=health_timeout,
            )
            body_error: BaseException | None = None
            async with asyncio.TaskGroup() as tg:
                db._start(tg)
                try:
                    yield db
                except BaseException as exc:
                    # Re-raised below, unwrapped: a TaskGroup would turn the caller's own
                    # error into an ExceptionGroup, which is ours to hide.
                    body_error = exc
                finally:
                    await db._shutdown(close_timeout)
            log.debug("store.closed", path=str(path), **db.stats)
            if body_error is not None:
                raise body_error
    finally:
        lock.release()
