"""PostgreSQL's committer for the group-commit writer: one batch = one transaction, fenced.

Theory of operation (the writer's rules, store/writer.py, hold; these add the fleet's):

1. One connection, one transaction at a time, in submission order (a FIFO lock): a write
   submitted later is never stored before one submitted earlier.
2. Fencing. Every write that belongs to a run (``sql.RUN_ID_AT``) is checked against the
   token this daemon holds for that run (fleet/leases.py). The batch first locks the rows of
   every run it touches (``SELECT … FOR UPDATE``, in id order, so two daemons never
   deadlock) and compares their ``lease`` with ours: a run whose row carries another token
   was taken over by another daemon (we stalled past the TTL and were declared dead). Every
   entry that writes such a run is refused whole, and the run is reported lost. A daemon
   that wakes from a stall therefore cannot finish, fail or re-attempt a run another daemon
   took over.
3. Creation. A run not in the table is being created: all new runs of the batch are inserted
   first, ``ON CONFLICT DO NOTHING RETURNING id``. One that is not returned collided with a
   unique key another daemon stored first (an idempotency key; a (job, due time) fired by a
   second leader for a split second, or backfilled twice): its entry is refused whole (kind
   ``duplicate``), and so is an entry whose keyed event collided. A refused entry's rows
   already inserted are deleted again, so an entry is all or nothing.
4. What is left is planned with the shared ``plan_batch`` and run as one statement per
   group (store/pg/sql.py), then NOTIFY: new unowned runs wake idle daemons, job changes
   tell the others to re-read the job. NOTIFY is delivered at COMMIT, never before.
5. A failure rolls the transaction back and fails the batch as a ``StoreError`` with a kind
   (the writer retries what must land). A connection found closed is opened again before
   the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import structlog

from automationd.errors import StoreError
from automationd.fleet.leases import Leases
from automationd.store.batch import Planned, Settlement, TxnFn, plan_batch
from automationd.store.pg import sql as q
from automationd.store.write import Stmt, Write

log = structlog.get_logger("automationd.store")

Connect = Callable[[], Awaitable[Any]]


class _Accepted:
    """An entry as planned after fencing: its writes less those already inserted."""

    __slots__ = ("fn", "writes")

    def __init__(self, writes: Sequence[Write], fn: TxnFn | None) -> None:
        self.writes = writes
        self.fn = fn


class PgCommitter:
    def __init__(self, connect: Connect, leases: Leases, tg: asyncio.TaskGroup) -> None:
        self._connect = connect
        self._conn: Any = None
        self._leases = leases
        self._tg = tg
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()

    def start(self, steps: Sequence[Any]) -> asyncio.Future[list[Any]]:
        raise NotImplementedError("the writer calls start_entries on this committer")

    def start_entries(self, entries: Sequence[Planned]) -> asyncio.Future[Settlement]:
        fut: asyncio.Future[Settlement] = self._loop.create_future()
        self._tg.create_task(self._run(list(entries), fut), name="store:batch")
        return fut

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                await self._conn.close()

    async def _run(self, entries: list[Planned], fut: asyncio.Future[Settlement]) -> None:
        try:
            async with self._lock:
                conn = await self._connection()
                if not entries:
                    await conn.fetchval("SELECT 1")  # a probe: prove the connection lives
                    result = Settlement([])
                else:
                    async with conn.transaction():
                        result = await self._apply(conn, entries)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(pg_error(exc, "write"))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if result.refused:
            lost = [e for e in result.refused.values() if isinstance(e, _Fenced)]
            if lost:
                self._leases.lose(run_id for e in lost for run_id in e.run_ids)
        if not fut.done():
            fut.set_result(result)

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await self._connect()
        return self._conn

    # -- one transaction ------------------------------------------------------------------
    async def _apply(self, conn: Any, entries: list[Planned]) -> Settlement:
        leases = self._leases
        refs: dict[str, set[int]] = {}  # run id → entries writing it
        creations: dict[str, tuple[int, Write]] = {}  # run id → its first RUN write
        keyed_events: list[tuple[int, Write]] = []
        for i, entry in enumerate(entries):
            for w in entry.writes:
                at = q.RUN_ID_AT.get(w.stmt)
                if at is None:
                    if w.stmt is Stmt.EVENT and w.params[4] is not None:
                        keyed_events.append((i, w))
                    continue
                run_id = w.params[at]
                refs.setdefault(run_id, set()).add(i)
                if w.stmt is Stmt.RUN and run_id not in creations:
                    creations[run_id] = (i, w)
        existing: dict[str, int] = {}
        if refs:
            existing = {r[0]: r[1] for r in await conn.fetch(q.LOCK_RUNS, list(refs))}
        refused: dict[int, Exception] = {}
        stale: dict[int, list[str]] = {}
        for run_id, writers in refs.items():
            lease = existing.get(run_id)
            if lease is None:
                continue
            if lease == 0 or leases.token_of(run_id) == lease:
                continue  # ours, or never leased (tokens start at 1: a claim always sets one)
            for i in writers:
                stale.setdefault(i, []).append(run_id)
        for i, run_ids in stale.items():
            refused[i] = _Fenced(run_ids)
        inserted = await self._create_runs(conn, creations, existing, refused)
        events_in = await self._create_events(conn, keyed_events, refused)
        self._cascade(refs, creations, existing, inserted, refused)
        undo_runs = [r for r in inserted if creations[r][0] in refused]
        if undo_runs:
            await conn.execute(q.UNDO_RUNS, undo_runs)
        undo_events = [
            w.params[0] for i, w in keyed_events if i in refused and w.params[0] in events_in
        ]
        if undo_events:
            await conn.execute(q.UNDO_EVENTS, undo_events)
        skip = {id(creations[r][1]) for r in inserted if creations[r][0] not in refused}
        skip.update(id(w) for i, w in keyed_events if w.params[0] in events_in)
        accepted = [
            _Accepted([w for w in e.writes if id(w) not in skip] if skip else e.writes, e.fn)
            for i, e in enumerate(entries)
            if i not in refused
        ]
        steps, statements, collapsed = plan_batch(accepted)
        results: list[Any] = []
        jobs: set[str] = set()
        for step in steps:
            if isinstance(step, tuple):
                stmt, rows = step
                if stmt is Stmt.JOB and not leases.shares_work:
                    await conn.execute(q.JOB_FULL, *q.columns_of(rows, 12, ()))
                else:
                    await _execute(conn, stmt, rows)
                if stmt is Stmt.JOB_STATE or stmt is Stmt.JOB_DELETE:
                    jobs.update(r[0] for r in rows)
            else:
                value = step(conn)
                if asyncio.iscoroutine(value):
                    value = await value
                results.append(value)
        if any(creations[r][1].params[q.RUN_LEASE] == 0 for r in inserted if r not in undo_runs):
            await conn.execute(q.NOTIFY, q.WORK_CHANNEL, "")
        for name in sorted(jobs):  # "node<TAB>job": a daemon ignores its own changes
            await conn.execute(q.NOTIFY, q.JOBS_CHANNEL, f"{self._leases.node_id}\t{name}")
        return Settlement(results, statements + len(inserted), collapsed, refused)

    async def _create_runs(
        self,
        conn: Any,
        creations: dict[str, tuple[int, Write]],
        existing: dict[str, int],
        refused: dict[int, Exception],
    ) -> set[str]:
        new = [(i, w) for r, (i, w) in creations.items() if r not in existing and i not in refused]
        if not new:
            return set()
        me, priority_of = self._leases.node_id, self._leases.priority_of
        rows = [
            (*w.params, me if w.params[q.RUN_LEASE] else None, priority_of(w.params[1]))
            for _, w in new
        ]
        width = len(q.RUN_COLS) + 2
        got = await conn.fetch(q.CREATE_RUNS, *q.columns_of(rows, width, q.NUL_SAFE[Stmt.RUN]))
        inserted = {r[0] for r in got}
        for i, w in new:
            if w.params[0] not in inserted:
                refused.setdefault(i, _duplicate("run", w.params[1]))
        return inserted

    async def _create_events(
        self, conn: Any, keyed: list[tuple[int, Write]], refused: dict[int, Exception]
    ) -> set[str]:
        todo = [(i, w) for i, w in keyed if i not in refused]
        if not todo:
            return set()
        rows = [w.params for _, w in todo]
        got = {r[0] for r in await conn.fetch(q.CREATE_EVENTS, *q.columns_of(rows, 6, ()))}
        missing = [w.params[0] for _, w in todo if w.params[0] not in got]
        ours = {r[0] for r in await conn.fetch(q.EVENTS_STORED, missing)} if missing else set()
        for i, w in todo:
            if w.params[0] not in got and w.params[0] not in ours:
                refused.setdefault(i, _duplicate("event", w.params[1]))
        return got

    @staticmethod
    def _cascade(
        refs: dict[str, set[int]],
        creations: dict[str, tuple[int, Write]],
        existing: dict[str, int],
        inserted: set[str],
        refused: dict[int, Exception],
    ) -> None:
        """An entry writing a run whose creation in this batch was refused is refused too:
        repeat until nothing changes. (A write of a run that has no row and no creation is
        not fenced: no daemon holds such a run.)"""
        changed = True
        while changed:
            changed = False
            for run_id, writers in refs.items():
                if run_id in existing or run_id not in creations:
                    continue
                made = run_id in inserted and creations[run_id][0] not in refused
                if made:
                    continue
                for i in writers:
                    if i not in refused:
                        refused[i] = StoreError(
                            f"run {run_id} was not stored; its later writes are dropped",
                            kind="duplicate",
                        )
                        changed = True


class _Fenced(StoreError):
    """Writes of runs whose fencing token is no longer ours."""

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__(
            f"store: stale lease on run {', '.join(run_ids[:3])}: another daemon took it over",
            kind="fenced",
        )
        self.run_ids = run_ids


def _duplicate(what: str, name: str) -> StoreError:
    return StoreError(
        f"store: this {what} of {name!r} already exists (its key or due time is taken)",
        kind="duplicate",
    )


async def _execute(conn: Any, stmt: Stmt, rows: list[tuple[Any, ...]]) -> None:
    grouped = q.GROUPED.get(stmt)
    if grouped is not None:
        width = len(q.COLUMNS[stmt][0])
        await conn.execute(grouped, *q.columns_of(rows, width, q.NUL_SAFE.get(stmt, ())))
        return
    safe = q.NUL_SAFE.get(stmt)
    if safe:
        rows = [tuple(c) for c in zip(*q.columns_of(rows, len(rows[0]), safe), strict=True)]
    await conn.executemany(q.SINGLE[stmt], rows)


_KINDS = {
    "53100": "disk_full",
    "25006": "read_only",
    "40001": "busy",
    "40P01": "busy",
    "55P03": "busy",
}
_REASONS = {"disk_full": "disk full", "read_only": "read-only", "busy": "database busy"}


def pg_error(exc: BaseException, where: str) -> BaseException:
    """A driver or connection error as a ``StoreError`` whose kind an operator can act on."""
    if isinstance(exc, StoreError | asyncio.CancelledError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        kind = _KINDS.get(getattr(exc, "sqlstate", "") or "", "other")
        reason = _REASONS.get(kind, f"{type(exc).__name__}: {exc}")
        detail = f" ({exc}; {where})" if kind != "other" else ""
        err = StoreError(f"store: {reason}{detail}", kind=kind)
    elif isinstance(exc, OSError | asyncpg.InterfaceError | TimeoutError | ConnectionError):
        err = StoreError(f"store: PostgreSQL unreachable ({type(exc).__name__}: {exc})", kind="io")
    else:
        err = StoreError(f"store: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err
