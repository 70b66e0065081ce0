"""Runs, targets, attempts, dead letters and events ↔ backend-neutral rows.

The ``w_*`` functions build ``Write`` values (store/write.py) from records without touching any
database; the ``*_from_row`` functions read a row back (a mapping by column name, as both
sqlite3.Row and asyncpg.Record are). Parameter order per statement is fixed here and is what
every backend's SQL for that ``Stmt`` binds:

    RUN      id, job, state, trigger, scheduled_for, created_at, started_at, finished_at,
             attempts, idempotency_key, payload, targets_total, targets_succeeded,
             targets_failed, error_kind, error_message, result, depth, origin, reason, lease,
             plan, targets_rolled_back, undo_from
    TARGET   run_id, idx, target, state, attempts, error_kind, error_message, result
    ATTEMPT  run_id, n, phase, target_idx, target, started_at, finished_at, outcome, error,
             stdout, stderr, pgid
    ATTEMPT_PGID  pgid, run_id, n          ATTEMPT_INTERRUPTED  finished_at, error, run_id, n
    DLQ      id, run_id, job, target_idx, target, error_kind, error_message, failed_at, phase
    DLQ_DELETE  id                         EVENT  id, name, payload, created_at, key, depth
    AUDIT    id, at, via, uid, user, cmd, target, job, args, digest, outcome, error

Every row write is a full-row upsert keyed by the row's primary key, so the writer may
collapse several writes of one row inside a batch to the last one. Times are epoch seconds;
JSON values are compact text. A stored value that no longer decodes (a damaged page, a value
written by hand) reads back as ``{"undecodable": "…"}`` rather than failing the whole read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from automationd import strictjson
from automationd.core.runstate import RunState, TargetState
from automationd.errors import ErrorKind
from automationd.records import (
    Attempt,
    AuditEntry,
    DlqEntry,
    Event,
    Phase,
    Run,
    RunError,
    Target,
    Trigger,
)
from automationd.store.write import Stmt, Write

Row = Mapping[str, Any]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def dumps(value: Any) -> str | None:
    """Compact JSON text; never raises. Values are checked where they enter (admin/args.py,
    the actions), so the fallback is for a value that slipped past: its non-finite numbers
    become ``null`` and anything not JSON its ``repr``, instead of failing a run's write."""
    if value is None:
        return None
    try:
        return _dumps(value)
    except (TypeError, ValueError):
        return strictjson.dumps_lenient(value)


def loads(text: str | None) -> Any:
    """A stored JSON value; one that does not read back as JSON an answer can carry (cut,
    scribbled on, or a ``1e999`` an older version let in) reads as ``{"undecodable": …}``."""
    if text is None:
        return None
    try:
        return strictjson.loads(text)
    except (ValueError, TypeError):
        return {"undecodable": text[:200] if isinstance(text, str) else repr(text)[:200]}


class RunView(Protocol):
    """What a run row is made of: a ``Run`` record, or a ``LiveRun`` while it runs."""

    @property
    def id(self) -> str: ...
    @property
    def job_name(self) -> str: ...
    @property
    def state(self) -> RunState: ...
    @property
    def trigger(self) -> Trigger: ...
    @property
    def scheduled_for(self) -> float | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def payload(self) -> Any: ...
    @property
    def targets_total(self) -> int: ...
    @property
    def targets_succeeded(self) -> int: ...
    @property
    def targets_failed(self) -> int: ...
    @property
    def error(self) -> RunError | None: ...
    @property
    def result(self) -> Any: ...
    @property
    def depth(self) -> int: ...
    @property
    def origin(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def lease(self) -> int: ...
    @property
    def plan(self) -> Any: ...
    @property
    def targets_rolled_back(self) -> int: ...
    @property
    def undo_from(self) -> int | None: ...


# The plain str of each enum member: SQLite binds a str subclass about 4x slower.
_TEXT: dict[Any, str] = {m: m.value for e in (RunState, Trigger, TargetState, Phase) for m in e}


def w_run(run: RunView) -> Write:
    err = run.error
    return Write(
        Stmt.RUN,
        (
            run.id,
            run.job_name,
            _TEXT[run.state],
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
            run.lease,
            dumps(run.plan),
            run.targets_rolled_back,
            run.undo_from,
        ),
        key=run.id,
    )


def w_target(t: Target) -> Write:
    err = t.error
    return Write(
        Stmt.TARGET,
        (
            t.run_id,
            t.idx,
            dumps(t.target),
            _TEXT[t.state],
            t.attempts,
            err.kind.value if err else None,
            err.message if err else None,
            dumps(t.result),
        ),
        key=(t.run_id, t.idx),
    )


def w_attempt(a: Attempt, *, stdout: str | None = None, stderr: str | None = None) -> Write:
    return Write(
        Stmt.ATTEMPT,
        (
            a.run_id,
            a.n,
            _TEXT[a.phase],
            a.target_idx,
            dumps(a.target),
            a.started_at,
            a.finished_at,
            a.outcome,
            a.error,
            stdout,
            stderr,
            None,
        ),
        key=(a.run_id, a.n),
    )


def w_attempt_pgid(run_id: str, n: int, pgid: int) -> Write:
    # A barrier: this UPDATE must not be reordered before the attempt row's upsert.
    return Write(Stmt.ATTEMPT_PGID, (pgid, run_id, n), barrier=True)


def w_attempt_interrupted(run_id: str, n: int, at: float, error: str) -> Write:
    return Write(Stmt.ATTEMPT_INTERRUPTED, (at, error, run_id, n), barrier=True)


def w_dlq(e: DlqEntry) -> Write:
    return Write(
        Stmt.DLQ,
        (
            e.id,
            e.run_id,
            e.job,
            e.target_idx,
            dumps(e.target),
            e.error.kind.value,
            e.error.message,
            e.failed_at,
            _TEXT[e.phase],
        ),
        key=e.id,
    )


def w_dlq_delete(ids: Sequence[str]) -> list[Write]:
    return [Write(Stmt.DLQ_DELETE, (i,), barrier=True) for i in ids]


def w_event(e: Event) -> Write:
    return w_event_row(e.id, e.name, dumps(e.payload), e.created_at, e.idempotency_key, e.depth)


def w_event_row(
    event_id: str,
    name: str,
    payload_json: str | None,
    created_at: float,
    key: str | None,
    depth: int,
) -> Write:
    """An event's row from its parts, the payload already JSON (the ``run.*`` events)."""
    return Write(Stmt.EVENT, (event_id, name, payload_json, created_at, key, depth), key=event_id)


# --- reading rows back ---------------------------------------------------------------------


def run_error(kind: str | None, message: str | None) -> RunError | None:
    if kind is None:
        return None
    try:
        return RunError(kind=ErrorKind(kind), message=message or "")
    except ValueError:  # a kind this version does not know: keep the text
        return RunError(kind=ErrorKind.FATAL, message=f"[{kind}] {message or ''}")


def run_from_row(r: Row) -> Run:
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
        error=run_error(r["error_kind"], r["error_message"]),
        result=loads(r["result"]),
        depth=r["depth"],
        origin=r["origin"],
        reason=r["reason"],
        lease=r["lease"],
        plan=loads(r["plan"]),
        targets_rolled_back=r["targets_rolled_back"],
        undo_from=r["undo_from"],
    )


def target_from_row(r: Row) -> Target:
    return Target(
        run_id=r["run_id"],
        idx=r["idx"],
        target=loads(r["target"]),
        state=TargetState(r["state"]),
        attempts=r["attempts"],
        error=run_error(r["error_kind"], r["error_message"]),
        result=loads(r["result"]),
    )


def attempt_from_row(r: Row) -> Attempt:
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


def dlq_from_row(r: Row) -> DlqEntry:
    return DlqEntry(
        id=r["id"],
        run_id=r["run_id"],
        job=r["job"],
        target_idx=r["target_idx"],
        target=loads(r["target"]),
        error=run_error(r["error_kind"], r["error_message"])
        or RunError(kind=ErrorKind.FATAL, message=""),
        failed_at=r["failed_at"],
        phase=Phase(r["phase"]),
    )


def event_from_row(r: Row) -> Event:
    return Event(
        id=r["id"],
        name=r["name"],
        payload=loads(r["payload"]),
        created_at=r["created_at"],
        idempotency_key=r["idempotency_key"],
        depth=r["depth"],
    )


# --- the audit trail and fire claims (issue 14) ----------------------------------------------


def w_audit(e: AuditEntry) -> Write:
    return w_audit_row(
        (
            e.id,
            e.at,
            e.via,
            e.uid,
            e.user,
            e.cmd,
            e.target,
            e.job,
            dumps(e.args),
            e.digest,
            e.outcome,
            e.error,
        )
    )


def w_audit_row(params: tuple[Any, ...]) -> Write:
    """An audit entry's row from its AUDIT parameters (the arguments already JSON text):
    the trail writes one per manual trigger, without a record in between."""
    return Write(Stmt.AUDIT, params, key=params[0])


def audit_from_row(r: Row) -> AuditEntry:
    return AuditEntry(
        id=r["id"],
        at=r["at"],
        via=r["via"],
        uid=r["uid"],
        user=r["user"],
        cmd=r["cmd"],
        target=r["target"],
        job=r["job"],
        args=loads(r["args"]),
        digest=r["digest"],
        outcome=r["outcome"],
        error=r["error"],
    )


def fire_ms(due: float) -> int:
    """A fire time compared in whole milliseconds (a float's last bits must not make one
    fire two when a backfill looks for the runs a window already has)."""
    return round(due * 1000)
