"""SQLite's retention steps, each run by the writer inside its next batch (store/retention.py
paces them). Selecting inside the writer's transaction makes "not live" and the delete one
atomic step: a run that is still queued, running or retrying is never pruned."""

from __future__ import annotations

import sqlite3

from automationd.clock import Clock
from automationd.store.api import PrunePass

_OLD_RUNS = (
    "SELECT id FROM runs WHERE id > ? AND id < ?"
    " AND state NOT IN ('queued', 'running', 'retrying') ORDER BY id LIMIT ?"
)
_OLD_EVENTS = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? ORDER BY id LIMIT ?)"
)
_OLD_AUDIT = "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE id < ? ORDER BY id LIMIT ?)"


def runs_step(
    conn: sqlite3.Connection, *, prune_pass: PrunePass, batch: int, clock: Clock
) -> tuple[int, bool, float]:
    t0 = clock.monotonic()
    p = prune_pass
    for dlq_id, run_id in conn.execute(
        "SELECT id, run_id FROM dlq WHERE id > ? ORDER BY id", (p.dlq_seen,)
    ):
        p.dlq_runs.add(run_id)
        p.dlq_seen = dlq_id
    rows = conn.execute(_OLD_RUNS, (p.cursor, p.before, batch)).fetchall()
    if not rows:
        return 0, False, clock.monotonic() - t0
    p.cursor = rows[-1][0]
    ids = [(r[0],) for r in rows if r[0] not in p.dlq_runs]
    conn.executemany("DELETE FROM attempts WHERE run_id=?", ids)
    conn.executemany("DELETE FROM targets WHERE run_id=?", ids)
    conn.executemany("DELETE FROM runs WHERE id=?", ids)
    return len(ids), len(rows) >= batch, clock.monotonic() - t0


def events_step(
    conn: sqlite3.Connection, *, before: str, batch: int, clock: Clock
) -> tuple[int, bool, float]:
    t0 = clock.monotonic()
    n = conn.execute(_OLD_EVENTS, (before, batch)).rowcount
    return n, n >= batch, clock.monotonic() - t0


def audit_step(
    conn: sqlite3.Connection, *, before: str, batch: int, clock: Clock
) -> tuple[int, bool, float]:
    """The audit trail is kept as long as runs are (store/retention.py)."""
    t0 = clock.monotonic()
    n = conn.execute(_OLD_AUDIT, (before, batch)).rowcount
    return n, n >= batch, clock.monotonic() - t0
