"""PostgreSQL's side of the writes: the SQL of every ``Stmt`` (params in store/rows.py order).

A group of rows becomes ONE statement: ``INSERT … SELECT * FROM unnest($1::text[], …)`` binds
one array per column, so a 5,000-row group is one round trip and one plan. Statements whose
rows must not be grouped (barriers) run once per row with ``executemany``.

Differences from SQLite, all for several daemons on one database:
- ``RUN`` updates only while the row's fencing token is the writer's (``WHERE runs.lease =
  excluded.lease``); the committer (store/pg/committer.py) has already refused stale writes,
  this is the belt to its braces. New runs are inserted apart (``CREATE_RUNS``) with their
  owner and priority, and a run whose idempotency key or (job, due time) exists is not
  inserted: the committer learns which from ``RETURNING``.
- For a fleet (``Leases.shares_work``) ``JOB`` merges counters (each daemon counts in its
  own memory): the larger value wins, and only ``JOB_STATE`` (an operator's change) sets
  pause, completion and spec, so a daemon that has not yet heard of a pause cannot undo it
  with its next counter write. Alone (``shares_work`` False) ``JOB`` is the full-row upsert
  of every backend (``JOB_FULL``).
"""

from __future__ import annotations

from automationd.store.write import Stmt

RUN_COLS = (
    "id",
    "job",
    "state",
    "trigger",
    "scheduled_for",
    "created_at",
    "started_at",
    "finished_at",
    "attempts",
    "idempotency_key",
    "payload",
    "targets_total",
    "targets_succeeded",
    "targets_failed",
    "error_kind",
    "error_message",
    "result",
    "depth",
    "origin",
    "reason",
    "lease",
    "plan",
    "targets_rolled_back",
    "undo_from",
)
_T, _F, _I, _B = "text", "float8", "int4", "int8"
RUN_TYPES = (
    *(_T, _T, _T, _T, _F, _F, _F, _F, _I, _T, _T, _I, _I, _I, _T, _T, _T, _I, _T, _T, _B),
    *(_T, _I, _I),
)
RUN_LEASE = 20  # position of the fencing token in a RUN write's params

COLUMNS: dict[Stmt, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Stmt.RUN: (RUN_COLS, RUN_TYPES),
    Stmt.TARGET: (
        ("run_id", "idx", "target", "state", "attempts", "error_kind", "error_message", "result"),
        (_T, _I, _T, _T, _I, _T, _T, _T),
    ),
    Stmt.ATTEMPT: (
        (
            "run_id",
            "n",
            "phase",
            "target_idx",
            "target",
            "started_at",
            "finished_at",
            "outcome",
            "error",
            "stdout",
            "stderr",
            "pgid",
        ),
        (_T, _I, _T, _I, _T, _F, _F, _T, _T, _T, _T, _I),
    ),
    Stmt.DLQ: (
        (
            "id",
            "run_id",
            "job",
            "target_idx",
            "target",
            "error_kind",
            "error_message",
            "failed_at",
            "phase",
        ),
        (_T, _T, _T, _I, _T, _T, _T, _F, _T),
    ),
    Stmt.EVENT: (
        ("id", "name", "payload", "created_at", "idempotency_key", "depth"),
        (_T, _T, _T, _F, _T, _I),
    ),
    Stmt.JOB: (
        (
            "name",
            "source",
            "spec",
            "paused",
            "completed",
            "last_scheduled",
            "run_count",
            "last_run",
            "last_success",
            "revision",
            "owner",
            "override",
        ),
        (_T, _T, _T, _I, _I, _F, _I, _T, _F, _I, _I, _I),
    ),
    Stmt.AUDIT: (
        (
            "id",
            "at",
            "via",
            "uid",
            '"user"',
            "cmd",
            "target",
            "job",
            "args",
            "digest",
            "outcome",
            "error",
        ),
        (_T, _F, _T, _I, _T, _T, _T, _T, _T, _T, _T, _T),
    ),
}
COLUMNS[Stmt.JOB_STATE] = COLUMNS[Stmt.JOB]

# Which param of a write names its run: the writes a fencing token guards.
RUN_ID_AT: dict[Stmt, int] = {
    Stmt.RUN: 0,
    Stmt.TARGET: 0,
    Stmt.ATTEMPT: 0,
    Stmt.ATTEMPT_PGID: 1,
    Stmt.ATTEMPT_INTERRUPTED: 2,
    Stmt.DLQ: 1,
}
# Text params that may carry a NUL byte (captured output, error texts): PostgreSQL's text
# refuses it, and one such row would fail its whole batch.
NUL_SAFE: dict[Stmt, tuple[int, ...]] = {
    Stmt.RUN: (15, 19),
    Stmt.TARGET: (6,),
    Stmt.ATTEMPT: (8, 9, 10),
    Stmt.DLQ: (6,),
    Stmt.ATTEMPT_INTERRUPTED: (1,),
}


def _unnest(cols: tuple[str, ...], types: tuple[str, ...], first: int = 1) -> str:
    args = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, start=first))
    return f"({', '.join(cols)}) SELECT * FROM unnest({args})"


def _set(cols: tuple[str, ...]) -> str:
    return ", ".join(f"{c}=excluded.{c}" for c in cols)


_RUN_UPDATE = RUN_COLS[2:3] + RUN_COLS[6:9] + RUN_COLS[10:17] + RUN_COLS[19:24]

JOB_FULL = (
    f"INSERT INTO jobs {_unnest(*COLUMNS[Stmt.JOB])} ON CONFLICT (name) DO UPDATE SET"
    " source=excluded.source, spec=excluded.spec, paused=excluded.paused,"
    " completed=excluded.completed, last_scheduled=excluded.last_scheduled,"
    " run_count=excluded.run_count, last_run=excluded.last_run,"
    " last_success=excluded.last_success, revision=excluded.revision,"
    " owner=excluded.owner, override=excluded.override"
)
GROUPED: dict[Stmt, str] = {
    Stmt.RUN: (
        f"INSERT INTO runs {_unnest(RUN_COLS, RUN_TYPES)} ON CONFLICT (id) DO UPDATE SET"
        f" {_set(_RUN_UPDATE)} WHERE runs.lease = excluded.lease"
    ),
    Stmt.TARGET: (
        f"INSERT INTO targets {_unnest(*COLUMNS[Stmt.TARGET])} ON CONFLICT (run_id, idx) DO"
        " UPDATE SET state=excluded.state, attempts=excluded.attempts,"
        " error_kind=excluded.error_kind, error_message=excluded.error_message,"
        " result=excluded.result"
    ),
    Stmt.ATTEMPT: (
        f"INSERT INTO attempts {_unnest(*COLUMNS[Stmt.ATTEMPT])} ON CONFLICT (run_id, n) DO"
        " UPDATE SET finished_at=excluded.finished_at, outcome=excluded.outcome,"
        " error=excluded.error, stdout=excluded.stdout, stderr=excluded.stderr,"
        " pgid=COALESCE(excluded.pgid, attempts.pgid)"
    ),
    Stmt.DLQ: f"INSERT INTO dlq {_unnest(*COLUMNS[Stmt.DLQ])} ON CONFLICT (id) DO NOTHING",
    Stmt.EVENT: f"INSERT INTO events {_unnest(*COLUMNS[Stmt.EVENT])} ON CONFLICT DO NOTHING",
    Stmt.JOB: (
        f"INSERT INTO jobs {_unnest(*COLUMNS[Stmt.JOB])} ON CONFLICT (name) DO UPDATE SET"
        " last_scheduled=GREATEST(jobs.last_scheduled, excluded.last_scheduled),"
        " run_count=GREATEST(jobs.run_count, excluded.run_count),"
        " last_run=GREATEST(jobs.last_run, excluded.last_run),"
        " last_success=GREATEST(jobs.last_success, excluded.last_success)"
    ),
    Stmt.AUDIT: f"INSERT INTO audit {_unnest(*COLUMNS[Stmt.AUDIT])} ON CONFLICT (id) DO NOTHING",
    Stmt.JOB_STATE: (
        f"INSERT INTO jobs {_unnest(*COLUMNS[Stmt.JOB])} ON CONFLICT (name) DO UPDATE SET"
        " source=excluded.source, spec=excluded.spec, paused=excluded.paused,"
        " completed=excluded.completed, revision=excluded.revision, owner=excluded.owner,"
        " override=excluded.override,"
        " last_scheduled=GREATEST(jobs.last_scheduled, excluded.last_scheduled),"
        " run_count=GREATEST(jobs.run_count, excluded.run_count),"
        " last_run=GREATEST(jobs.last_run, excluded.last_run),"
        " last_success=GREATEST(jobs.last_success, excluded.last_success)"
    ),
}
SINGLE: dict[Stmt, str] = {
    Stmt.ATTEMPT_PGID: "UPDATE attempts SET pgid=$1 WHERE run_id=$2 AND n=$3",
    Stmt.ATTEMPT_INTERRUPTED: (
        "UPDATE attempts SET finished_at=$1, outcome='interrupted', error=$2"
        " WHERE run_id=$3 AND n=$4 AND outcome IS NULL"
    ),
    Stmt.DLQ_DELETE: "DELETE FROM dlq WHERE id=$1",
    Stmt.JOB_DELETE: "DELETE FROM jobs WHERE name=$1",
    Stmt.RUN_DELETE: "DELETE FROM runs WHERE id=$1 AND state='queued' AND attempts=0",
    Stmt.RUNS_STARTED: (
        "UPDATE runs SET state='running', started_at=$1, attempts=1, lease=$2, reason=NULL"
        " WHERE id IN (SELECT jsonb_array_elements_text($3::jsonb))"
    ),
    Stmt.ATTEMPTS_STARTED: (
        "INSERT INTO attempts (run_id, n, phase, target_idx, target, started_at)"
        " SELECT r, 1, $1, $2, NULL, $3 FROM jsonb_array_elements_text($4::jsonb) AS r"
    ),
    Stmt.JOBS_COUNTED: (
        "UPDATE jobs SET run_count = jobs.run_count + 1, last_run = j->>1"
        " FROM jsonb_array_elements($1::jsonb) AS j WHERE jobs.name = j->>0"
    ),
}
assert set(GROUPED) | set(SINGLE) == set(Stmt), "every statement needs its PostgreSQL text"

# New runs, with the owner (NULL: claimable) and priority the RUN params do not carry.
CREATE_RUNS = (
    f"INSERT INTO runs {_unnest((*RUN_COLS, 'owner', 'priority'), (*RUN_TYPES, _T, _I))}"
    " ON CONFLICT DO NOTHING RETURNING id"
)
# Events with an idempotency key: one per key in the whole fleet.
CREATE_EVENTS = (
    f"INSERT INTO events {_unnest(*COLUMNS[Stmt.EVENT])} ON CONFLICT DO NOTHING RETURNING id"
)
LOCK_RUNS = "SELECT id, lease FROM runs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
EVENTS_STORED = "SELECT id FROM events WHERE id = ANY($1::text[])"
UNDO_RUNS = "DELETE FROM runs WHERE id = ANY($1::text[])"
UNDO_EVENTS = "DELETE FROM events WHERE id = ANY($1::text[])"
NOTIFY = "SELECT pg_notify($1, $2)"

WORK_CHANNEL = "automationd_work"  # claimable runs appeared
JOBS_CHANNEL = "automationd_jobs"  # a job was added, removed, paused, resumed or completed
CANCEL_CHANNEL = "automationd_cancel"  # a run owned by another daemon is to be cancelled


def columns_of(
    rows: list[tuple[object, ...]], width: int, nul_safe: tuple[int, ...]
) -> list[list[object]]:
    """Rows → one list per column (what ``unnest`` binds), NUL bytes replaced where text
    may carry them."""
    cols: list[list[object]] = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * width
    for i in nul_safe:
        col = cols[i]
        for j, value in enumerate(col):
            if type(value) is str and "\x00" in value:
                col[j] = value.replace("\x00", "\ufffd")
    return cols
