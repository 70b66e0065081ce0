"""The store's read queries, written once for every SQL backend.

A backend gives ``SqlReads`` one coroutine, ``fetchall(sql, params)``, that runs a query
written with ``?`` placeholders and returns rows addressable by column name; the backend
translates placeholders if its driver wants others. Where SQL dialects differ the backend
says so once (``glob``: whether it has SQLite's ``GLOB``).

Ids sort by creation time (core/ids.py) and start with the creation millisecond, so a time
window is a primary-key range and the run and event listings never scan their tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from automationd.core.ids import id_floor
from automationd.core.match import glob_match
from automationd.core.runstate import LIVE, RunState, TargetState
from automationd.records import Attempt, AuditEntry, DlqEntry, Event, Run, Target
from automationd.store import runpages
from automationd.store.api import AuditQuery, OpenAttempt, RunQuery
from automationd.store.jobs import JOB_COLUMNS, StoredJobs
from automationd.store.rows import Row, audit_from_row, fire_ms, loads
from automationd.store.runpages import STATE_INDEX, ms_id, run_filters
from automationd.store.salvage import read_attempt, read_dlq, read_event, read_run, read_target

Fetch = Callable[[str, Sequence[Any]], Awaitable[Sequence[Row]]]

RUN_COLS = (
    "id, job, state, trigger, scheduled_for, created_at, started_at, finished_at, attempts,"
    " idempotency_key, payload, targets_total, targets_succeeded, targets_failed, error_kind,"
    " error_message, result, depth, origin, reason, lease, plan, targets_rolled_back,"
    " undo_from"
)
_PAGE = 500  # events read per page while a name glob is filtered in Python
_TOP_MESSAGES = 3  # most common messages shown per (job, kind) in the DLQ summary


class SqlReads:
    """The read half of ``Store`` (store/api.py) over one ``fetchall``."""

    def __init__(self, fetchall: Fetch, *, glob: bool) -> None:
        self._fetch = fetchall
        self._glob = glob

    async def _one(self, sql: str, params: Sequence[Any]) -> Row | None:
        rows = await self._fetch(sql, params)
        return rows[0] if rows else None

    # -- runs -----------------------------------------------------------------------------
    async def run(self, run_id: str) -> Run | None:
        row = await self._one(f"SELECT {RUN_COLS} FROM runs WHERE id=?", (run_id,))
        return read_run(row) if row else None

    async def run_by_key(self, job: str, key: str) -> Run | None:
        row = await self._one(
            f"SELECT {RUN_COLS} FROM runs WHERE job=? AND idempotency_key=?", (job, key)
        )
        return read_run(row) if row else None

    async def apply_of(self, preview_id: str) -> Run | None:
        row = await self._one(
            f"SELECT {RUN_COLS} FROM runs WHERE origin=? AND trigger='apply' ORDER BY id LIMIT 1",
            (preview_id,),
        )
        return read_run(row) if row else None

    async def runs(self, q: RunQuery) -> list[Run]:
        where, params = run_filters(q)
        hint = STATE_INDEX.get(q.state or "")
        if hint is not None and q.job is None:
            where.append(hint)  # implies nothing new; lets the partial index serve the filter
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {RUN_COLS} FROM runs {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, q.limit, q.offset),
        )
        return [read_run(r) for r in rows]

    async def runs_window(self, q: RunQuery, scan: int) -> tuple[list[Run], str | None]:
        return await runpages.runs_window(self._fetch, RUN_COLS, q, scan)

    async def recent_states(self, jobs: Sequence[str], per_job: int) -> dict[str, list[str]]:
        return await runpages.recent_states(self._fetch, jobs, per_job)

    async def live_runs(self) -> list[Run]:
        states = sorted(s.value for s in LIVE)
        rows = await self._fetch(
            f"SELECT {RUN_COLS} FROM runs WHERE state IN ({','.join('?' * len(states))})"
            " ORDER BY id",
            states,
        )
        return [read_run(r) for r in rows]

    async def target_rows(self, run_id: str) -> list[Target]:
        rows = await self._fetch("SELECT * FROM targets WHERE run_id=? ORDER BY idx", (run_id,))
        return [read_target(r) for r in rows]

    async def targets(self, run: Run) -> list[Target]:
        stored = await self.target_rows(run.id)
        if stored or run.targets_total != 1:
            return stored
        # The one implicit target: its state lives on the run row, its tries in the attempts.
        row = await self._one(
            "SELECT COUNT(*) AS n FROM attempts WHERE run_id=? AND phase='perform'", (run.id,)
        )
        state = TargetState.PENDING
        if run.state is RunState.SUCCEEDED:
            state = TargetState.SUCCEEDED
        elif run.state in (RunState.FAILED, RunState.PARTIAL) and run.targets_failed:
            state = TargetState.FAILED
        return [
            Target(
                run_id=run.id,
                idx=0,
                target=None,
                state=state,
                attempts=int(row["n"] if row else 0),
                error=run.error if state is TargetState.FAILED else None,
                result=run.result if state is TargetState.SUCCEEDED else None,
            )
        ]

    async def attempts(self, run_id: str) -> list[Attempt]:
        rows = await self._fetch("SELECT * FROM attempts WHERE run_id=? ORDER BY n", (run_id,))
        return [read_attempt(r) for r in rows]

    async def open_attempts(self, run_id: str) -> list[OpenAttempt]:
        rows = await self._fetch(
            "SELECT n, phase, target_idx, pgid FROM attempts WHERE run_id=? AND outcome IS NULL"
            " ORDER BY n",
            (run_id,),
        )
        return [OpenAttempt(r["n"], r["phase"], r["target_idx"], r["pgid"]) for r in rows]

    async def logs(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT n, phase, target, stdout, stderr FROM attempts WHERE run_id=?"
            " AND (stdout IS NOT NULL OR stderr IS NOT NULL) ORDER BY n",
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

    # -- dead letters ---------------------------------------------------------------------
    async def dlq(self, *, job: str | None, limit: int) -> list[DlqEntry]:
        if job is None:
            rows = await self._fetch("SELECT * FROM dlq ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self._fetch(
                "SELECT * FROM dlq WHERE job=? ORDER BY id DESC LIMIT ?", (job, limit)
            )
        return [read_dlq(r) for r in rows]

    async def dlq_select(
        self,
        *,
        id: str | None,
        job: str | None,
        all: bool,
        kind: str | None = None,
        since: float | None = None,
    ) -> list[DlqEntry]:
        if id is not None:
            rows = await self._fetch("SELECT * FROM dlq WHERE id=?", (id,))
        elif job is not None or kind is not None or since is not None:
            clause, params = _dlq_where(job, kind, since)
            rows = await self._fetch(f"SELECT * FROM dlq {clause} ORDER BY id", params)
        elif all:
            rows = await self._fetch("SELECT * FROM dlq ORDER BY id", ())
        else:
            rows = []
        return [read_dlq(r) for r in rows]

    async def dlq_summary(
        self,
        *,
        job: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        newest: int | None = None,
    ) -> list[dict[str, Any]]:
        """Dead letters by (job, error kind): count, oldest and newest ``failed_at``, and the
        messages that come up most (``messages``, the first of them as ``sample``).
        ``newest``: only that many newest entries are grouped (the web console's bound: a
        grouping costs a pass over all it groups)."""
        clause, params = _dlq_where(job, kind, since)
        source = "dlq"
        if newest is not None:
            source = f"(SELECT * FROM dlq {clause} ORDER BY id DESC LIMIT ?) AS d"
            params, clause = [*params, newest], ""
        groups = await self._fetch(
            "SELECT job, error_kind, COUNT(*) AS n, MIN(failed_at) AS oldest,"
            f" MAX(failed_at) AS newest FROM {source} {clause} GROUP BY job, error_kind",
            params,
        )
        texts = await self._fetch(
            "SELECT job, error_kind, error_message, COUNT(*) AS n FROM"
            f" {source} {clause} GROUP BY job, error_kind, error_message",
            params,
        )
        top: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for r in texts:
            top.setdefault((r["job"], r["error_kind"]), []).append((r["n"], r["error_message"]))
        out: list[dict[str, Any]] = []
        for g in groups:
            common = sorted(top.get((g["job"], g["error_kind"]), []), key=lambda m: (-m[0], m[1]))
            out.append(
                {
                    "job": g["job"],
                    "kind": g["error_kind"],
                    "count": g["n"],
                    "oldest": g["oldest"],
                    "newest": g["newest"],
                    "sample": common[0][1] if common else None,
                    "messages": [{"message": m, "count": n} for n, m in common[:_TOP_MESSAGES]],
                }
            )
        out.sort(key=lambda x: (-x["count"], x["job"], x["kind"]))
        return out

    async def dlq_count(self) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM dlq", ())
        return int(row["n"]) if row else 0

    # -- events ---------------------------------------------------------------------------
    async def event_by_key(self, key: str) -> Event | None:
        row = await self._one("SELECT * FROM events WHERE idempotency_key=?", (key,))
        return read_event(row) if row else None

    async def event_runs(self, event: Event) -> list[str]:
        # created in the event's transaction, so their ids lie just above the event's
        rows = await self._fetch(
            "SELECT id FROM runs WHERE id > ? AND id < ? AND origin=? AND trigger='event'"
            " ORDER BY id",
            (event.id, id_floor(event.created_at + 60.0), event.id),
        )
        return [r["id"] for r in rows]

    async def events(
        self,
        *,
        since: float | None,
        until: float | None,
        limit: int | None,
        newest_first: bool,
        name: str | None = None,
        before: str | None = None,
    ) -> list[Event]:
        """A ``name`` glob is pushed into SQL where the backend's glob means ours (no
        ``[...]`` classes, whose negation differs) and every row is re-checked with
        ``core.match.glob_match`` either way, in pages, so no filter loads the whole history.
        ``before``: only ids below it (keyset paging, newest first)."""
        where: list[str] = []
        params: list[Any] = []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if since is not None:
            where.append("id >= ?")
            params.append(ms_id(since))
        if until is not None:
            where.append("id < ?")
            params.append(ms_id(until, 1))
        if name is not None and not any(c in name for c in "*?[]"):
            where.append("name = ?")  # a plain name: read its index backwards, no sort
            params.append(name)
        elif name is not None and self._glob and "[" not in name and "]" not in name:
            where.append("name GLOB ?")
            params.append(name)
        order = "DESC" if newest_first else "ASC"
        cursor_op = "<" if newest_first else ">"
        out: list[Event] = []
        cursor: str | None = None
        while limit is None or len(out) < limit:
            conds, page_params = list(where), list(params)
            if cursor is not None:
                conds.append(f"id {cursor_op} ?")
                page_params.append(cursor)
            clause = f"WHERE {' AND '.join(conds)}" if conds else ""
            rows = await self._fetch(
                f"SELECT * FROM events {clause} ORDER BY id {order} LIMIT {_PAGE}", page_params
            )
            out.extend(read_event(r) for r in rows if name is None or glob_match(name, r["name"]))
            if len(rows) < _PAGE:
                break
            cursor = rows[-1]["id"]
        return out if limit is None else out[:limit]

    # -- jobs -----------------------------------------------------------------------------
    async def job_rows(self) -> StoredJobs:
        rows = await self._fetch(f"SELECT {JOB_COLUMNS} FROM jobs", ())
        return StoredJobs(cast(Sequence[Sequence[Any]], rows))  # rows index by position too

    # -- fires and the audit trail (issue 14) ---------------------------------------------
    async def fired(self, job: str, since: float, until: float) -> set[int]:
        """Fire times (``fire_ms``) in [since, until) that already have a run: the
        ``scheduled_for`` of any stored run of the job."""
        lo, hi = fire_ms(since), fire_ms(until)
        runs = await self._fetch(
            "SELECT scheduled_for FROM runs WHERE job=? AND scheduled_for >= ?"
            " AND scheduled_for < ?",
            (job, lo / 1000 - 0.0005, hi / 1000 - 0.0005),
        )
        return {fire_ms(r["scheduled_for"]) for r in runs}

    async def audit(self, q: AuditQuery) -> list[AuditEntry]:
        where: list[str] = []
        params: list[Any] = []
        if q.job is not None:
            where.append("job=?")
            params.append(q.job)
        if q.uid is not None:
            where.append("uid=?")
            params.append(q.uid)
        if q.since is not None:
            where.append("id >= ?")
            params.append(ms_id(q.since))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT * FROM audit {clause} ORDER BY id DESC LIMIT ?", (*params, q.limit)
        )
        return [audit_from_row(r) for r in rows]


def _dlq_where(job: str | None, kind: str | None, since: float | None) -> tuple[str, list[Any]]:
    """The WHERE clause of a dead-letter filter (every given part must hold)."""
    where: list[str] = []
    params: list[Any] = []
    if job is not None:
        where.append("job=?")
        params.append(job)
    if kind is not None:
        where.append("error_kind=?")
        params.append(kind)
    if since is not None:
        where.append("failed_at >= ?")
        params.append(since)
    return (f"WHERE {' AND '.join(where)}" if where else ""), params
