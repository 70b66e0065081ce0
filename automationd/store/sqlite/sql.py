"""SQLite's side of the writes: the SQL of every ``Stmt``, and running a planned batch as one
transaction on the writer connection's thread (store/writer.py has the rules)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

import structlog

from automationd.errors import StoreError
from automationd.store.batch import Step
from automationd.store.write import Stmt

_RUN_COLS = (
    "id, job, state, trigger, scheduled_for, created_at, started_at, finished_at, attempts,"
    " idempotency_key, payload, targets_total, targets_succeeded, targets_failed, error_kind,"
    " error_message, result, depth, origin, reason, lease, plan, targets_rolled_back,"
    " undo_from"
)

SQL: dict[Stmt, str] = {
    Stmt.RUN: (
        f"INSERT INTO runs ({_RUN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT(id) DO UPDATE SET state=excluded.state, started_at=excluded.started_at,"
        " finished_at=excluded.finished_at, attempts=excluded.attempts,"
        " payload=excluded.payload, targets_total=excluded.targets_total,"
        " targets_succeeded=excluded.targets_succeeded, targets_failed=excluded.targets_failed,"
        " error_kind=excluded.error_kind, error_message=excluded.error_message,"
        " result=excluded.result, reason=excluded.reason, lease=excluded.lease,"
        " plan=excluded.plan, targets_rolled_back=excluded.targets_rolled_back,"
        " undo_from=excluded.undo_from"
    ),
    Stmt.TARGET: (
        "INSERT INTO targets (run_id, idx, target, state, attempts, error_kind, error_message,"
        " result) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(run_id, idx) DO UPDATE SET"
        " state=excluded.state, attempts=excluded.attempts, error_kind=excluded.error_kind,"
        " error_message=excluded.error_message, result=excluded.result"
    ),
    Stmt.ATTEMPT: (
        "INSERT INTO attempts (run_id, n, phase, target_idx, target, started_at, finished_at,"
        " outcome, error, stdout, stderr, pgid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT(run_id, n) DO UPDATE SET finished_at=excluded.finished_at,"
        " outcome=excluded.outcome, error=excluded.error, stdout=excluded.stdout,"
        " stderr=excluded.stderr, pgid=COALESCE(excluded.pgid, attempts.pgid)"
    ),
    Stmt.ATTEMPT_PGID: "UPDATE attempts SET pgid=? WHERE run_id=? AND n=?",
    Stmt.ATTEMPT_INTERRUPTED: (
        "UPDATE attempts SET finished_at=?, outcome='interrupted', error=?"
        " WHERE run_id=? AND n=? AND outcome IS NULL"
    ),
    Stmt.DLQ: (
        "INSERT INTO dlq (id, run_id, job, target_idx, target, error_kind, error_message,"
        " failed_at, phase) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING"
    ),
    Stmt.DLQ_DELETE: "DELETE FROM dlq WHERE id=?",
    Stmt.EVENT: (
        "INSERT INTO events (id, name, payload, created_at, idempotency_key, depth)"
        " VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING"
    ),
    Stmt.JOB: (
        "INSERT INTO jobs (name, source, spec, paused, completed, last_scheduled, run_count,"
        " last_run, last_success, revision, owner, override) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT(name) DO UPDATE SET"
        " source=excluded.source, spec=excluded.spec, paused=excluded.paused,"
        " completed=excluded.completed, last_scheduled=excluded.last_scheduled,"
        " run_count=excluded.run_count, last_run=excluded.last_run,"
        " last_success=excluded.last_success, revision=excluded.revision,"
        " owner=excluded.owner, override=excluded.override"
    ),
    Stmt.JOB_DELETE: "DELETE FROM jobs WHERE name=?",
    Stmt.AUDIT: (
        "INSERT INTO audit (id, at, via, uid, user, cmd, target, job, args, digest, outcome,"
        " error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING"
    ),
}
SQL[Stmt.RUN_DELETE] = "DELETE FROM runs WHERE id=? AND state='queued' AND attempts=0"
SQL[Stmt.RUNS_STARTED] = (
    "UPDATE runs SET state='running', started_at=?, attempts=1, lease=?, reason=NULL"
    " WHERE id IN (SELECT value FROM json_each(?))"
)
SQL[Stmt.ATTEMPTS_STARTED] = (
    "INSERT INTO attempts (run_id, n, phase, target_idx, target, started_at)"
    " SELECT value, 1, ?, ?, NULL, ? FROM json_each(?)"
)
SQL[Stmt.JOBS_COUNTED] = (
    "UPDATE jobs SET run_count = run_count + 1, last_run = j.value ->> 1"
    " FROM json_each(?) AS j WHERE jobs.name = j.value ->> 0"
)
SQL[Stmt.JOB_STATE] = SQL[Stmt.JOB]  # one host: an operator's change is a plain full row
assert set(SQL) == set(Stmt), "every statement needs its SQLite text"

log = structlog.get_logger("automationd.store")

_CHUNKS = (1024, 256, 64, 16, 4)
_MAX_PARAMS = 32000  # below SQLite's default SQLITE_MAX_VARIABLE_NUMBER (32766)
_multi_sql: dict[tuple[str, int], str | None] = {}


def multirow(sql: str, n: int) -> str | None:
    """``INSERT … VALUES (?,…) rest`` with ``n`` value groups; None if ``sql`` is not that form.

    Why: ``executemany`` steps once per row, and every step releases and re-takes the GIL.
    With the event loop busy, each re-take can wait a whole switch interval (5 ms), so a
    5,000-row batch spent most of its time waiting for the GIL, not in SQLite. One statement
    with many value groups binds them all in C and hands the GIL over once. Chunk sizes are
    fixed so SQLite's statement cache keeps hitting.
    """
    key = (sql, n)
    if key in _multi_sql:
        return _multi_sql[key]
    out: str | None = None
    head, sep, tail = sql.partition(" VALUES (")
    if sep and head.lstrip().upper().startswith("INSERT"):
        group, close, rest = tail.partition(")")
        if close and group and set(group.replace(" ", "")) <= {"?", ","}:
            out = f"{head} VALUES {','.join([f'({group})'] * n)}{rest}"
    _multi_sql[key] = out
    return out


def execute_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    i, total = 0, len(rows)
    if total >= _CHUNKS[-1] and multirow(sql, 1) is not None:
        width = len(rows[0])
        for size in _CHUNKS:
            if size * width > _MAX_PARAMS or total - i < size:
                continue
            stmt = multirow(sql, size)
            assert stmt is not None
            while total - i >= size:
                conn.execute(stmt, list(chain.from_iterable(rows[i : i + size])))
                i += size
    if i < total:
        conn.executemany(sql, rows[i:])


def execute_plan(conn: sqlite3.Connection, steps: Sequence[Step]) -> list[Any]:
    """Run on the writer's thread: one transaction for all steps; results of functions.

    A value SQLite cannot bind (a lone surrogate in a string, an integer beyond 64 bits) would
    fail its batch, and the writer retries held writes forever: one bad value would wedge the
    store. So a batch that fails that way runs once more with such values made bindable
    (``bindable``), and the rows are kept rather than lost; the store logs that it did.
    """
    try:
        return _transaction(conn, steps)
    except _UNBINDABLE as exc:
        results = _transaction(conn, [_bindable_step(step) for step in steps])
        log.warning("store.values_repaired", error=f"{type(exc).__name__}: {exc}"[:300])
        return results


_UNBINDABLE = (UnicodeEncodeError, OverflowError, sqlite3.ProgrammingError)


def _transaction(conn: sqlite3.Connection, steps: Sequence[Step]) -> list[Any]:
    if not steps:
        conn.execute("SELECT 1").fetchone()  # a probe or an empty submit: prove the thread lives
        return []
    results: list[Any] = []
    sql = "BEGIN IMMEDIATE"
    try:
        conn.execute(sql)
        for step in steps:
            if isinstance(step, tuple):
                sql = SQL[step[0]]
                execute_rows(conn, sql, step[1])
            else:
                sql = getattr(step, "__name__", "function")
                results.append(step(conn))
        sql = "COMMIT"
        conn.execute(sql)
    except BaseException as exc:
        if conn.in_transaction:
            # If even ROLLBACK fails the connection is broken; the first error is what matters.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, _UNBINDABLE):
            raise
        if isinstance(exc, sqlite3.Error):
            raise store_error(exc, f"in {sql[:120]!r}") from exc
        raise
    return results


def _bindable_step(step: Step) -> Step:
    if not isinstance(step, tuple):
        return step
    stmt, rows = step
    return stmt, [tuple(bindable(v) for v in row) for row in rows]


_INT64 = (-(1 << 63), (1 << 63) - 1)


def bindable(value: Any) -> Any:
    """``value`` as something SQLite binds: lone surrogates become ``\\udXXX`` text, integers
    are clamped to 64 bits, and anything else that is not a SQLite type becomes its text."""
    if value is None or type(value) in (float, bytes):
        return value
    if type(value) is int:
        return min(max(value, _INT64[0]), _INT64[1])
    if type(value) is bool:
        return int(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return bindable(str(value))


_KINDS = {
    "SQLITE_FULL": "disk_full",
    "SQLITE_IOERR": "io",
    "SQLITE_READONLY": "read_only",
    "SQLITE_BUSY": "busy",
    "SQLITE_LOCKED": "busy",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "corrupt",
    "SQLITE_CANTOPEN": "io",
    "SQLITE_PERM": "read_only",
}
_REASONS = {
    "disk_full": "disk full",
    "io": "I/O error",
    "read_only": "read-only",
    "busy": "database busy",
    "corrupt": "database damaged",
}


def store_error(exc: sqlite3.Error, where: str = "") -> StoreError:
    """A sqlite3 error as a ``StoreError`` whose kind an operator can act on."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    kind = _KINDS.get("_".join(name.split("_")[:2]), "other")  # SQLITE_IOERR_WRITE → io
    if kind == "other" and "disk is full" in str(exc):
        kind = "disk_full"
    reason = _REASONS.get(kind, f"{type(exc).__name__}: {exc}")
    detail = f" ({exc}{'; ' + where if where else ''})" if kind != "other" else ""
    return StoreError(f"store: {reason}{detail}", kind=kind, reason=f"store: {reason}")
