"""The PostgreSQL store: a database several daemons share (SPEC §7.4).

Shape: ``open_pg(config, leases)`` checks the schema (``automationd migrate`` must have run;
``run`` never migrates) and opens

- the WRITER, one connection on which the group-commit writer's batches run, each one
  transaction, fenced by this daemon's leases (store/pg/committer.py);
- a small POOL for reads (store/reads.py, written with ``?``: translated to ``$n`` once per
  query text) and for the fleet's own statements (store/pg/fleet.py).

Durability: a write is reported after its COMMIT returned, so it is as durable as the
server's ``synchronous_commit`` makes it (on by default: flushed to the WAL, and to a
synchronous standby if one is configured).

Health: as SQLite's, by the same code (store/health.py): a probe every ``health_interval``
sends an empty batch through the writer and a ``SELECT 1`` through the pool, each under
``health_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import structlog

from automationd.clock import Clock, SystemClock
from automationd.config.model import StoreConfig
from automationd.errors import StoreError
from automationd.fleet.leases import Leases
from automationd.store.api import PrunePass
from automationd.store.health import StoreHealth
from automationd.store.pg import prune
from automationd.store.pg.committer import PgCommitter, pg_error
from automationd.store.pg.migrate import require_current
from automationd.store.pg.schema_cmd import dump_database
from automationd.store.reads import SqlReads
from automationd.store.rows import Row
from automationd.store.write import Observer, Then, Write
from automationd.store.writer import MAX_BATCH, Writer

__all__ = ["PgStore", "connect", "open_pg"]

T = TypeVar("T")
log = structlog.get_logger("automationd.store")
CONNECT_TIMEOUT = 10.0


async def connect(dsn: str) -> Any:
    """One connection (``asyncpg`` raises its own errors; callers map them)."""
    return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)


def _dollars(sql: str) -> str:
    """``?`` placeholders → ``$1, $2, …`` (our read SQL has no ``?`` inside literals)."""
    parts = sql.split("?")
    if len(parts) == 1:
        return sql
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    return "".join(out)


class PgStore(SqlReads):
    """``Store`` (store/api.py) on PostgreSQL. Build it with ``open_pg``."""

    def __init__(
        self,
        writer: Writer,
        pool: Any,
        clock: Clock,
        *,
        dsn: str,
        schema_version: int,
        health_interval: float,
        health_timeout: float,
    ) -> None:
        super().__init__(self._fetchall, glob=False)
        self.dsn = dsn
        self.pool = pool
        self.schema_version = schema_version
        self._writer = writer
        self._clock = clock
        self._sql: dict[str, str] = {}
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
        self._writer.observer = observer  # the web console's live feed (Store.watch)

    async def run_in_transaction(self, fn: Callable[[Any], Any]) -> Any:
        """``await fn(conn)`` inside the next batch's transaction (a barrier; see SQLite's)."""
        return await self._writer.call(fn)

    def in_next_batch(self, fn: Callable[[Any], Any]) -> asyncio.Future[Any]:
        """As ``run_in_transaction``, for a caller that does not wait (its future)."""
        return self._writer.call(fn)

    @property
    def stats(self) -> dict[str, Any]:
        w = self._writer
        return {
            "batches": w.batches,
            "writes": w.writes,
            "statements": w.statements,
            "failed_batches": w.failed_batches,
            "pending": w.pending,
            "commit_seconds": w.commit_seconds,
            "healthy": self.healthy,
        }

    # -- reads ----------------------------------------------------------------------------
    async def _fetchall(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = _dollars(sql)
        try:
            rows: Sequence[Row] = await self.pool.fetch(text, *params)
        except Exception as exc:
            raise pg_error(exc, "read") from exc
        return rows

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        """A query in PostgreSQL's own dialect (``$n``), for the fleet's statements."""
        try:
            rows: list[Any] = await self.pool.fetch(sql, *params)
        except Exception as exc:
            raise pg_error(exc, "read") from exc
        return rows

    # -- retention ------------------------------------------------------------------------
    async def prune_runs_step(self, prune_pass: PrunePass, batch: int) -> tuple[int, bool, float]:
        result: tuple[int, bool, float] = await self.run_in_transaction(
            lambda conn: prune.runs_step(conn, prune_pass, batch, self._clock)
        )
        return result

    async def prune_audit_step(self, before: str, batch: int) -> tuple[int, bool, float]:
        result: tuple[int, bool, float] = await self.run_in_transaction(
            lambda conn: prune.audit_step(conn, before, batch, self._clock)
        )
        return result

    # -- damage (issue 11) ----------------------------------------------------------------
    async def check(self) -> list[str]:
        """``store.check`` on PostgreSQL: the server keeps pages, encodings and types sound
        itself, so what is left to check is the references SQLite's check also reads: every
        target, attempt and dead letter belongs to a stored run."""
        problems: list[str] = []
        for table in ("targets", "attempts", "dlq"):
            rows = await self._fetchall(
                f"SELECT COUNT(*) AS n, MIN(t.run_id) AS example FROM {table} t"
                " WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = t.run_id)",
                (),
            )
            n = int(rows[0]["n"]) if rows else 0
            if n:
                problems.append(
                    f"{table}: {n} row{'s' * (n != 1)} of runs that are not stored"
                    f" (e.g. run_id={rows[0]['example']!r})"
                )
        return problems

    # -- backup ---------------------------------------------------------------------------
    async def backup(self, path: str) -> int:
        """``pg_dump --format=custom`` of the database into the new file ``path`` (a
        consistent snapshot; the daemons go on writing). Restore with ``pg_restore``."""
        return await dump_database(self.dsn, path)

    async def prune_events_step(self, before: str, batch: int) -> tuple[int, bool, float]:
        result: tuple[int, bool, float] = await self.run_in_transaction(
            lambda conn: prune.events_step(conn, before, batch, self._clock)
        )
        return result


@contextlib.asynccontextmanager
async def open_pg(
    config: StoreConfig,
    leases: Leases,
    *,
    health_interval: float = 1.0,
    health_timeout: float = 5.0,
    close_timeout: float = 10.0,
    max_batch: int = MAX_BATCH,
    clock: Clock | None = None,
    on_error: Callable[[str], None] | None = None,
) -> AsyncIterator[PgStore]:
    """Check the schema, open the writer and the pool, run the health probe.

    On exit: flush pending writes (up to ``close_timeout``, even if cancelled), close.
    Raises ``StoreError`` when the database cannot be reached or is not migrated.
    """
    clock = clock or SystemClock()
    dsn = config.dsn

    async def writer_conn() -> Any:
        return await connect(dsn)

    try:
        first = await writer_conn()
    except Exception as exc:
        raise StoreError(
            f"cannot connect to PostgreSQL ({_redact(dsn)}): {exc}", kind="io"
        ) from exc
    try:
        version = await require_current(first)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6, timeout=CONNECT_TIMEOUT)
    except StoreError:
        await first.close()
        raise
    except Exception as exc:
        await first.close()
        raise StoreError(f"cannot use PostgreSQL ({_redact(dsn)}): {exc}", kind="io") from exc
    handed = [first]

    async def reconnect() -> Any:
        return handed.pop() if handed else await writer_conn()

    try:
        async with asyncio.TaskGroup() as tg:
            committer = PgCommitter(reconnect, leases, tg)
            store_ref: list[PgStore] = []
            writer = Writer(
                committer,
                clock,
                max_batch=max_batch,
                on_error=on_error,
                on_health=lambda: store_ref[0].health.changed() if store_ref else None,
            )
            store = PgStore(
                writer,
                pool,
                clock,
                dsn=dsn,
                schema_version=version,
                health_interval=health_interval,
                health_timeout=health_timeout,
            )
            store_ref.append(store)
            probe = tg.create_task(store.health.probe_loop(), name="store:probe")
            body_error: BaseException | None = None
            try:
                yield store
            except BaseException as exc:
                body_error = exc  # re-raised below, outside the TaskGroup (see SQLite's)
            finally:
                probe.cancel()
                await _flush(writer, close_timeout)
                await committer.close()
        log.warning("store.closed", backend="postgresql", **store.stats)
        if body_error is not None:
            raise body_error
    finally:
        await pool.close()
        for conn in handed:
            await conn.close()


def _redact(dsn: str) -> str:
    """The DSN without a password (``user:secret@`` → ``user:***@``)."""
    head, sep, tail = dsn.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return dsn
    scheme, _, auth = head.partition("//")
    user = auth.split(":", 1)[0]
    return f"{scheme}//{user}:***@{tail}"


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
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
