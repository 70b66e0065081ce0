"""The fleet's statements on PostgreSQL: registry, heartbeats, leader, rescue and claims.

Rules:
- Time is the server's (``_NOW``): hosts with skewed clocks agree on who is late.
- A daemon's life is a row in ``nodes`` with an ``incarnation`` token. Its heartbeat renews
  the row; a heartbeat that finds no row means the daemon was declared dead (its runs are
  someone else's now) and must start a new life (``register``).
- Rescue (``_RESCUE``): a dead daemon's live runs lose their owner and get a new fencing
  token; their attempts without an outcome are closed ``interrupted``, exactly as crash
  recovery does on one host. NOTIFY wakes the claimers. Rescue is by heartbeat only: a
  long run of a live daemon is never taken from it.
- A claim takes up to n unowned live runs, highest priority first, with ``FOR UPDATE SKIP
  LOCKED`` (claimers never wait for each other) and gives each a new token. Only a daemon
  whose life row exists may claim or lead.
- The leader row is held until ``until`` and renewed with each heartbeat; anyone may take
  it once it lapsed (or when its holder was rescued, which clears it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from automationd import __version__
from automationd.config.model import StoreConfig
from automationd.errors import StoreError
from automationd.fleet.api import default_node_id
from automationd.records import Run, Target
from automationd.store.jobs import JOB_COLUMNS
from automationd.store.pg.committer import pg_error
from automationd.store.pg.sql import CANCEL_CHANNEL, NOTIFY, RUN_COLS, WORK_CHANNEL
from automationd.store.pg.store import CONNECT_TIMEOUT, PgStore, connect
from automationd.store.rows import run_from_row, target_from_row

log = structlog.get_logger("automationd.fleet")

_NOW = "extract(epoch FROM clock_timestamp())"
_LIVE = "('queued', 'running', 'retrying')"
INTERRUPTED = "the daemon running this attempt stopped or was declared dead"

_RESCUE = f"""
WITH gone AS (
    SELECT id FROM runs WHERE owner = $1 AND state IN {_LIVE} FOR UPDATE
), closed AS (
    UPDATE attempts a SET finished_at = {_NOW}, outcome = 'interrupted', error = $2
    FROM gone WHERE a.run_id = gone.id AND a.outcome IS NULL
    RETURNING a.run_id
)
UPDATE runs r SET owner = NULL, lease = nextval('lease_seq')
FROM gone WHERE r.id = gone.id
RETURNING r.id, (SELECT count(*) FROM closed) AS interrupted
"""
_CLAIM = f"""
WITH picked AS (
    SELECT id FROM runs
    WHERE owner IS NULL AND state IN {_LIVE}
      AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND incarnation = $2)
    ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED
)
UPDATE runs r SET owner = $1, lease = nextval('lease_seq')
FROM picked WHERE r.id = picked.id
RETURNING {", ".join(f"r.{c}" for c in RUN_COLS)}
"""
_LEAD = f"""
UPDATE leader SET
    term = term + CASE WHEN node IS NOT DISTINCT FROM $1
                        AND incarnation IS NOT DISTINCT FROM $2 THEN 0 ELSE 1 END,
    node = $1, incarnation = $2, until = {_NOW} + $3
WHERE id = 1 AND (until < {_NOW} OR (node = $1 AND incarnation = $2))
  AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND incarnation = $2)
RETURNING term
"""


class PgFleet:
    """One daemon's view of the fleet on PostgreSQL (store/pg/store.py's pool)."""

    def __init__(self, store: PgStore, config: StoreConfig, *, capacity: int) -> None:
        self._store = store
        self.ttl = config.lease_ttl
        self.node_id = config.node_id or default_node_id()
        self.capacity = capacity
        self.incarnation = 0
        self.term = 0
        self.started_at = 0.0
        self._listener: Any = None
        self._pool: Any = None

    # -- connections ----------------------------------------------------------------------
    async def open(self) -> None:
        """The fleet's own connections: a heartbeat must never queue behind the read pool
        (a burst of requests can hold every pooled connection for longer than the TTL)."""
        try:
            self._pool = await asyncpg.create_pool(
                self._store.dsn, min_size=2, max_size=3, timeout=CONNECT_TIMEOUT
            )
        except Exception as exc:
            raise pg_error(exc, "fleet connections") from exc

    async def close(self) -> None:
        await self.unlisten()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _own(self) -> Any:
        if self._pool is None:
            raise StoreError("store: the fleet's connections are closed", kind="closed")
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            rows: list[Any] = await self._own().fetch(sql, *args)
        except StoreError:
            raise
        except Exception as exc:
            raise pg_error(exc, "fleet") from exc
        return rows

    # -- life -----------------------------------------------------------------------------
    async def register(self) -> int:
        """Start a life: refuse if a live daemon uses our id; rescue the runs of our id's
        previous life (a crash: they are resumed by whoever claims them); returns the new
        incarnation (this life's fencing token)."""
        rows = await self._fetch(
            f"SELECT incarnation, host, pid, heartbeat_at + ttl - {_NOW} AS left FROM nodes"
            " WHERE id = $1",
            self.node_id,
        )
        if rows and rows[0]["left"] > 0 and rows[0]["incarnation"] != self.incarnation:
            r = rows[0]
            if self.incarnation == 0:  # at start: a namesake is alive
                raise StoreError(
                    f"node id {self.node_id!r} is in use by a live automationd "
                    f"(host {r['host']}, pid {r['pid']}); give each daemon its own "
                    "[store] node_id"
                )
        await self.rescue(self.node_id)
        token = await self._fetch("SELECT nextval('lease_seq') AS t")
        self.incarnation = int(token[0]["t"])
        await self._fetch(
            f"INSERT INTO nodes (id, incarnation, host, pid, version, started_at, heartbeat_at,"
            f" ttl, capacity) VALUES ($1, $2, $3, $4, $5, {_NOW}, {_NOW}, $6, $7)"
            " ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation,"
            " host = excluded.host, pid = excluded.pid, version = excluded.version,"
            " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
            " ttl = excluded.ttl, capacity = excluded.capacity, busy = 0",
            self.node_id,
            self.incarnation,
            socket.gethostname(),
            os.getpid(),
            __version__,
            self.ttl,
            self.capacity,
        )
        got = await self._fetch("SELECT started_at FROM nodes WHERE id = $1", self.node_id)
        self.started_at = float(got[0]["started_at"]) if got else 0.0
        self.term = 0
        log.info("node.registered", node=self.node_id, incarnation=self.incarnation)
        return self.incarnation

    async def beat(self, busy: int) -> bool:
        """Renew our life; False when we were declared dead (our row is gone)."""
        rows = await self._fetch(
            f"UPDATE nodes SET heartbeat_at = {_NOW}, busy = $3 WHERE id = $1"
            " AND incarnation = $2 RETURNING id",
            self.node_id,
            self.incarnation,
            busy,
        )
        return bool(rows)

    async def lead(self) -> bool:
        """Take or renew the leader row; True while we hold it."""
        rows = await self._fetch(_LEAD, self.node_id, self.incarnation, self.ttl)
        if rows:
            self.term = int(rows[0]["term"])
            return True
        return False

    async def leave(self) -> int:
        """A clean stop: hand our live runs to the others, give up the leader row, delete
        our row. Returns how many runs were handed over."""
        n = await self.rescue(self.node_id)
        await self._fetch(
            "UPDATE leader SET until = 0 WHERE node = $1 AND incarnation = $2",
            self.node_id,
            self.incarnation,
        )
        await self._fetch(
            "DELETE FROM nodes WHERE id = $1 AND incarnation = $2", self.node_id, self.incarnation
        )
        return n

    # -- the dead ------------------------------------------------------------------------
    async def next_death(self) -> float:
        """Seconds until the first peer's heartbeat would be older than its TTL."""
        rows = await self._fetch(
            f"SELECT min(heartbeat_at + ttl) - {_NOW} AS left FROM nodes WHERE id <> $1",
            self.node_id,
        )
        left = rows[0]["left"] if rows else None
        return float(left) if left is not None else self.ttl

    async def reap(self) -> list[tuple[str, int]]:
        """Declare dead every daemon whose heartbeat is older than its TTL and rescue its
        runs; returns (node, runs rescued) for each."""
        dead = await self._fetch(
            f"SELECT id, incarnation FROM nodes WHERE heartbeat_at + ttl < {_NOW}"
        )
        out: list[tuple[str, int]] = []
        for row in dead:
            node, inc = row["id"], row["incarnation"]
            gone = await self._fetch(
                f"DELETE FROM nodes WHERE id = $1 AND incarnation = $2"
                f" AND heartbeat_at + ttl < {_NOW} RETURNING id",
                node,
                inc,
            )
            if not gone:
                continue  # it beat meanwhile, or another daemon reaped it first
            await self._fetch(
                "UPDATE leader SET until = 0 WHERE node = $1 AND incarnation = $2", node, inc
            )
            out.append((node, await self.rescue(node)))
        return out

    async def rescue(self, node: str) -> int:
        """Unown ``node``'s live runs (new tokens, open attempts interrupted); NOTIFY."""
        try:
            async with self._own().acquire() as conn, conn.transaction():
                rows = await conn.fetch(_RESCUE, node, INTERRUPTED)
                if rows:
                    await conn.execute(NOTIFY, WORK_CHANNEL, "")
        except StoreError:
            raise
        except Exception as exc:
            raise pg_error(exc, "rescue") from exc
        if rows:
            log.warning(
                "node.runs_rescued",
                node=node,
                runs=len(rows),
                interrupted_attempts=int(rows[0]["interrupted"]),
            )
        return len(rows)

    # -- work -----------------------------------------------------------------------------
    async def claim(self, n: int) -> list[Run]:
        """Up to ``n`` unowned live runs, now ours (each ``lease`` is its new token)."""
        if n <= 0:
            return []
        rows = await self._fetch(_CLAIM, self.node_id, self.incarnation, n)
        return [run_from_row(r) for r in rows]

    async def targets_of(self, run_ids: list[str]) -> dict[str, list[Target]]:
        """The stored targets of many runs in one query (claimed runs, before resuming)."""
        rows = await self._fetch(
            "SELECT * FROM targets WHERE run_id = ANY($1::text[]) ORDER BY run_id, idx", run_ids
        )
        out: dict[str, list[Target]] = {}
        for r in rows:
            out.setdefault(r["run_id"], []).append(target_from_row(r))
        return out

    async def claim_run(self, run_id: str) -> Run | None:
        """Claim one unowned live run by id (to cancel it), or None if it is held or over."""
        rows = await self._fetch(
            f"UPDATE runs r SET owner = $1, lease = nextval('lease_seq') WHERE r.id = $3"
            f" AND r.owner IS NULL AND r.state IN {_LIVE}"
            " AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND incarnation = $2)"
            f" RETURNING {', '.join(f'r.{c}' for c in RUN_COLS)}",
            self.node_id,
            self.incarnation,
            run_id,
        )
        return run_from_row(rows[0]) if rows else None

    async def job_row(self, name: str) -> Any:
        """One job's stored row (columns of store/jobs.py ``JOB_COLUMNS``), or None."""
        rows = await self._store.fetch(f"SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1", name)
        return rows[0] if rows else None

    async def count(self) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM nodes")
        return int(rows[0]["n"])

    async def owner_of(self, run_id: str) -> str | None:
        rows = await self._store.fetch("SELECT owner FROM runs WHERE id = $1", run_id)
        return rows[0]["owner"] if rows else None

    async def ask_cancel(self, run_id: str) -> None:
        """Tell the daemon that holds ``run_id`` to cancel it."""
        await self._fetch(NOTIFY, CANCEL_CHANNEL, run_id)

    # -- views ----------------------------------------------------------------------------
    async def workers(self) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT n.*, (l.node = n.id AND l.incarnation = n.incarnation"
            f" AND l.until >= {_NOW}) AS leader FROM nodes n CROSS JOIN leader l ORDER BY n.id"
        )
        return [dict(r) for r in rows]

    # -- notifications ------------------------------------------------------------------
    async def listen(self, handlers: dict[str, Callable[[str], None]]) -> None:
        """Deliver NOTIFY payloads of ``handlers``' channels (a connection of its own)."""
        await self.unlisten()
        conn = await connect(self._store.dsn)
        for channel, handler in handlers.items():
            await conn.add_listener(channel, _relay(handler))
        self._listener = conn

    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    async def unlisten(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            await conn.close()


def _relay(handler: Callable[[str], None]) -> Callable[..., None]:
    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        handler(payload)

    return on_notify
