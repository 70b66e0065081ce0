"""Runs, targets, attempts and dead letters ↔ SQL.

Every write is a full-row upsert keyed by the row's primary key, so the group-commit writer may
collapse several writes of one row inside a batch to the last one (see store/db.py). Functions
named ``w_*`` build ``Write`` values without touching the database; the caller decides whether
to await durability (``db.write``) or just enqueue (``db.submit``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from automationd.core.runstate import LIVE, RunState, TargetState
from automationd.errors import ErrorKind
from automationd.records import Attempt, DlqEntry, Phase, Run, RunError, Target, Trigger
from automationd.store.db import Database, Write

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_RUN_COLS = (
    "id, job, state, trigger, scheduled_for, created_at, started_at, finished_at, attempts,"
    " idempotency_key, payload, targets_total, targets_succeeded, targets_failed, error_kind,"
    " error_message, result, depth, origin, reason"
)
_UPSERT_RUN = (
    f"INSERT INTO runs ({_RUN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT(id) DO UPDATE SET state=excluded.state, started_at=excluded.started_at,"
    " finished_at=excluded.finished_at, attempts=excluded.attempts, payload=excluded.payload,"
    " targets_total=excluded.targets_total, targets_succeeded=excluded.targets_succeeded,"
    " targets_failed=excluded.targets_failed, error_kind=excluded.error_kind,"
    " error_message=excluded.error_message, result=excluded.result, reason=excluded.reason"
)
_UPSERT_TARGET = (
    "INSERT INTO targets (run_id, idx, target, state, attempts, error_kind, error_message, result)"
    " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(run_id, idx) DO UPDATE SET state=excluded.state,"
    " attempts=excluded.attempts, error_kind=excluded.error_kind,"
    " error_message=excluded.error_message, result=excluded.result"
)
_UPSERT_ATTEMPT = (
    "INSERT INTO attempts (run_id, n, phase, target_idx, target, started_at, finished_at,"
    " outcome, error, stdout, stderr, pgid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT(run_id, n) DO UPDATE SET finished_at=excluded.finished_at,"
    " outcome=excluded.outcome, error=excluded.error, stdout=excluded.stdout,"
    " stderr=excluded.stderr, pgid=COALESCE(excluded.pgid, attempts.pgid)"
)
_INSERT_DLQ = (
    "INSERT OR REPLACE INTO dlq (id, run_id, job, target_idx, target, error_kind,"
    " error_message, failed_at) VALUES (?,?,?,?,?,?,?,?)"
)


_TEXT: dict[Any, str] = {m: m.value for e in (RunState, Trigger) for m in e}  # no .value call


def w_run(run: Run) -> Write:
    err = run.error
    return Write(
        _UPSERT_RUN,
        (
            run.id,
            run.job,
            _TEXT[run.state],  # the plain str: SQLite binds a str subclass 4x slower
            _TEXT[run.trigger],
            run.scheduled_for,
            run.created_at,
            run.started_at,
            run.finished_at,
            run.attempts,
            run.idempotency_key,
            dumps(run.payload),
            run.targets_total,
            run.targets_succeeded,
            run.targets_failed,
            err.kind.value if err else None,
            err.message if err else None,
            dumps(run.result),
            run.depth,
            run.origin,
            run.reason,
        ),
        key=run.id,
    )


def w_target(t: Target) -> Write:
    err = t.error
    return Write(
        _UPSERT_TARGET,
        (
            t.run_id,
            t.idx,
            dumps(t.target),
            t.state.value,
            t.attempts,
            err.kind.value if err else None,
            err.message if err else None,
            dumps(t.result),
        ),
        key=(t.run_id, t.idx),
    )


def w_attempt(
    a: Attempt, *, stdout: str | None = None, stderr: str | None = None, pgid: int | None = None
) -> Write:
    return Write(
        _UPSERT_ATTEMPT,
        (
            a.run_id,
            a.n,
            a.phase.value,
            a.target_idx,
            dumps(a.target),
            a.started_at,
            a.finished_at,
            a.outcome,
            a.error,
            stdout,
            stderr,
            pgid,
        ),
        key=(a.run_id, a.n),
    )


def w_attempt_pgid(run_id: str, n: int, pgid: int) -> Write:
    # A barrier: this UPDATE must not be reordered before the attempt row's upsert.
    return Write(
        "UPDATE attempts SET pgid=? WHERE run_id=? AND n=?", (pgid, run_id, n), barrier=True
    )


def w_dlq(e: DlqEntry) -> Write:
    return Write(
        _INSERT_DLQ,
        (
            e.id,
            e.run_id,
            e.job,
            e.target_idx,
            dumps(e.target),
            e.error.kind.value,
            e.error.message,
            e.failed_at,
        ),
        key=e.id,
    )


def w_dlq_delete(ids: Sequence[str]) -> list[Write]:
    return [Write("DELETE FROM dlq WHERE id=?", (i,), barrier=True) for i in ids]


def lean_attempt(
    run: Run, *, finished_at: float | None, outcome: str | None, error: str | None = None
) -> Attempt:
    """The row-less first attempt of a lean run (engine/attempts.py), rebuilt from its run."""
    return Attempt(
        run_id=run.id,
        n=run.attempts,
        phase=Phase.PERFORM,
        target=None,
        target_idx=-1,
        started_at=run.started_at or run.created_at,
        finished_at=finished_at,
        outcome=outcome,
        error=error,
    )


def _error(kind: str | None, message: str | None) -> RunError | None:
    if kind is None:
        return None
    return RunError(kind=ErrorKind(kind), message=message or "")


def run_from_row(r: sqlite3.Row) -> Run:
    return Run(
        id=r["id"],
        job=r["job"],
        state=RunState(r["state"]),
        trigger=Trigger(r["trigger"]),
        scheduled_for=r["scheduled_for"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        attempts=r["attempts"],
        idempotency_key=r["idempotency_key"],
        payload=loads(r["payload"]),
        targets_total=r["targets_total"],
        targets_succeeded=r["targets_succeeded"],
        targets_failed=r["targets_failed"],
        error=_error(r["error_kind"], r["error_message"]),
        result=loads(r["result"]),
        depth=r["depth"],
        origin=r["origin"],
        reason=r["reason"],
    )


def target_from_row(r: sqlite3.Row) -> Target:
    return Target(
        run_id=r["run_id"],
        idx=r["idx"],
        target=loads(r["target"]),
        state=TargetState(r["state"]),
        attempts=r["attempts"],
        error=_error(r["error_kind"], r["error_message"]),
        result=loads(r["result"]),
    )


def attempt_from_row(r: sqlite3.Row) -> Attempt:
    return Attempt(
        run_id=r["run_id"],
        n=r["n"],
        phase=Phase(r["phase"]),
        target=loads(r["target"]),
        target_idx=r["target_idx"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        outcome=r["outcome"],
        error=r["error"],
    )


def dlq_from_row(r: sqlite3.Row) -> DlqEntry:
    return DlqEntry(
        id=r["id"],
        run_id=r["run_id"],
        job=r["job"],
        target_idx=r["target_idx"],
        target=loads(r["target"]),
        error=RunError(kind=ErrorKind(r["error_kind"]), message=r["error_message"]),
        failed_at=r["failed_at"],
    )


class RunStore:
    """Read queries for runs and the DLQ (writes are built with the w_* functions)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, run_id: str) -> Run | None:
        row = await self.db.fetchone(f"SELECT {_RUN_COLS} FROM runs WHERE id=?", (run_id,))
        return run_from_row(row) if row else None

    async def by_key(self, job: str, key: str) -> Run | None:
        row = await self.db.fetchone(
            f"SELECT {_RUN_COLS} FROM runs WHERE job=? AND idempotency_key=?", (job, key)
        )
        return run_from_row(row) if row else None

    async def recent(
        self, *, job: str | None, state: str | None, limit: int, offset: int
    ) -> list[Run]:
        where, params = [], []
        if job is not None:
            where.append("job=?")
            params.append(job)
        if state is not None:
            where.append("state=?")
            params.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self.db.fetchall(
            f"SELECT {_RUN_COLS} FROM runs {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [run_from_row(r) for r in rows]

    async def live(self) -> list[Run]:
        rows = await self.db.fetchall(
            f"SELECT {_RUN_COLS} FROM runs WHERE state IN ({','.join('?' * len(LIVE))})"
            " ORDER BY id",
            tuple(s.value for s in LIVE),
        )
        return [run_from_row(r) for r in rows]

    async def targets(self, run_id: str) -> list[Target]:
        rows = await self.db.fetchall(
            "SELECT * FROM targets WHERE run_id=? ORDER BY idx", (run_id,)
        )
        return [target_from_row(r) for r in rows]

    async def implicit_target(self, run: Run) -> Target:
        """The one target of a run without explicit targets (its state lives on the run row)."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n, SUM(phase='perform') AS p FROM attempts WHERE run_id=?",
            (run.id,),
        )
        rows, perform = (row["n"] or 0, row["p"] or 0) if row else (0, 0)
        n = perform + max(0, run.attempts - rows)  # a lean run's first attempt has no row
        state = TargetState.PENDING
        if run.state is RunState.SUCCEEDED:
            state = TargetState.SUCCEEDED
        elif run.state in (RunState.FAILED, RunState.PARTIAL) and run.targets_failed:
            state = TargetState.FAILED
        return Target(
            run_id=run.id,
            idx=0,
            target=None,
            state=state,
            attempts=int(n or 0),
            error=run.error if state is TargetState.FAILED else None,
            result=run.result if state is TargetState.SUCCEEDED else None,
        )

    async def targets_of(self, run: Run) -> list[Target]:
        """Stored targets, or the implicit one for a run without explicit targets."""
        rows = await self.targets(run.id)
        if not rows and run.targets_total == 1:
            return [await self.implicit_target(run)]
        return rows

    async def attempts(self, run_id: str) -> list[Attempt]:
        rows = await self.db.fetchall("SELECT * FROM attempts WHERE run_id=? ORDER BY n", (run_id,))
        return [attempt_from_row(r) for r in rows]

    async def has_attempt(self, run_id: str, n: int) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM attempts WHERE run_id=? AND n=?", (run_id, n))
        return row is not None

    async def open_attempts(self, run_id: str) -> list[sqlite3.Row]:
        return await self.db.fetchall(
            "SELECT * FROM attempts WHERE run_id=? AND outcome IS NULL", (run_id,)
        )

    async def attempts_of(self, run: Run) -> list[Attempt]:
        """Stored attempts, plus the row-less first attempt of a lean run (engine/attempts.py)."""
        rows = await self.attempts(run.id)
        if run.attempts > len(rows) and not any(a.n == run.attempts for a in rows):
            outcome = None
            if run.state.terminal:
                outcome = (
                    "ok"
                    if run.state is RunState.SUCCEEDED
                    else (run.error.kind.value if run.error else None)
                )
            finished = run.finished_at if run.state.terminal else None
            rows.append(lean_attempt(run, finished_at=finished, outcome=outcome))
        return rows

    async def logs(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT n, phase, target, stdout, stderr FROM attempts WHERE run_id=? ORDER BY n",
            (run_id,),
        )
        out: list[dict[str, Any]] = []
        for r in rows:
            for stream in ("stdout", "stderr"):
                if r[stream]:
                    out.append(
                        {
                            "attempt": r["n"],
                            "phase": r["phase"],
                            "target": loads(r["target"]),
                            "stream": stream,
                            "text": r[stream],
                        }
                    )
        return out

    async def last_runs(self, job: str, limit: int = 5) -> list[Run]:
        return await self.recent(job=job, state=None, limit=limit, offset=0)

    async def dlq_list(self, *, job: str | None, limit: int) -> list[DlqEntry]:
        if job is None:
            rows = await self.db.fetchall("SELECT * FROM dlq ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM dlq WHERE job=? ORDER BY id DESC LIMIT ?", (job, limit)
            )
        return [dlq_from_row(r) for r in rows]

    async def dlq_select(self, *, id: str | None, job: str | None, all: bool) -> list[DlqEntry]:
        if id is not None:
            rows = await self.db.fetchall("SELECT * FROM dlq WHERE id=?", (id,))
        elif job is not None:
            rows = await self.db.fetchall("SELECT * FROM dlq WHERE job=? ORDER BY id", (job,))
        elif all:
            rows = await self.db.fetchall("SELECT * FROM dlq ORDER BY id")
        else:
            rows = []
        return [dlq_from_row(r) for r in rows]

    async def dlq_count(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM dlq") or 0)
