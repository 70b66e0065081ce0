"""PostgreSQL's retention steps, each run inside the writer's next batch (as SQLite's,
store/sqlite/prune.py): selecting in the writing transaction makes "not live" and the delete
one atomic step, so a queued, running or retrying run is never pruned."""

from __future__ import annotations

from typing import Any

from automationd.clock import Clock
from automationd.store.api import PrunePass

_OLD_RUNS = (
    "SELECT id FROM runs WHERE id > $1 AND id < $2"
    " AND state NOT IN ('queued', 'running', 'retrying') ORDER BY id LIMIT $3"
)
_OLD_AUDIT = (
    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE id < $1 ORDER BY id LIMIT $2)"
)
_OLD_EVENTS = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < $1 ORDER BY id LIMIT $2)"
)


async def runs_step(
    conn: Any, prune_pass: PrunePass, batch: int, clock: Clock
) -> tuple[int, bool, float]:
    t0 = clock.monotonic()
    p = prune_pass
    for dlq_id, run_id in await conn.fetch(
        "SELECT id, run_id FROM dlq WHERE id > $1 ORDER BY id", p.dlq_seen
    ):
        p.dlq_runs.add(run_id)
        p.dlq_seen = dlq_id
    rows = await conn.fetch(_OLD_RUNS, p.cursor, p.before, batch)
    if not rows:
        return 0, False, clock.monotonic() - t0
    p.cursor = rows[-1][0]
    ids = [r[0] for r in rows if r[0] not in p.dlq_runs]
    await conn.execute("DELETE FROM attempts WHERE run_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM targets WHERE run_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM runs WHERE id = ANY($1::text[])", ids)
    return len(ids), len(rows) >= batch, clock.monotonic() - t0


async def events_step(conn: Any, before: str, batch: int, clock: Clock) -> tuple[int, bool, float]:
    return await _delete_below(conn, _OLD_EVENTS, before, batch, clock)


async def audit_step(conn: Any, before: str, batch: int, clock: Clock) -> tuple[int, bool, float]:
    """The audit trail is kept as long as runs are (store/retention.py)."""
    return await _delete_below(conn, _OLD_AUDIT, before, batch, clock)


async def _delete_below(
    conn: Any, sql: str, before: str, batch: int, clock: Clock
) -> tuple[int, bool, float]:
    t0 = clock.monotonic()
    status: str = await conn.execute(sql, before, batch)
    n = int(status.rsplit(" ", 1)[-1])  # "DELETE n"
    return n, n >= batch, clock.monotonic() - t0
