"""Age-based pruning of runs (with their targets and attempts) and events.

Small batches (``batch`` runs per transaction) go through the same group-commit writer as
everything else, so a prune of a million old runs never holds the writer for long: between
two prune batches, the writer commits whatever the engine queued meanwhile. Ids sort by
creation time, so "older than" is a primary-key range. Live runs and the dead-letter queue
are never pruned.
"""

from __future__ import annotations

import asyncio

import structlog

from automationd.clock import Clock
from automationd.config.model import RetentionConfig
from automationd.core.ids import id_floor
from automationd.store.db import Database, Write

log = structlog.get_logger("automationd.retention")

_OLD_RUNS = (
    "SELECT id FROM runs WHERE id < ? AND state NOT IN ('queued', 'running', 'retrying')"
    " ORDER BY id LIMIT ?"
)


class Retention:
    def __init__(
        self, db: Database, clock: Clock, config: RetentionConfig, *, batch: int = 1000,
        interval: float = 300.0, first_delay: float = 10.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.batch = batch
        self.interval = interval
        self.first_delay = first_delay

    async def run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("retention.failed")
            await asyncio.sleep(self.interval)

    async def prune_once(self) -> dict[str, int]:
        now = self.clock.time()
        runs = await self.prune_runs(id_floor(now - self.config.runs_max_age))
        events = await self.prune_events(id_floor(now - self.config.events_max_age))
        if runs or events:
            log.info("retention.pruned", runs=runs, events=events)
        return {"runs": runs, "events": events}

    async def prune_runs(self, before_id: str) -> int:
        total = 0
        while True:
            rows = await self.db.fetchall(_OLD_RUNS, (before_id, self.batch))
            if not rows:
                return total
            ids = [(r["id"],) for r in rows]
            writes = [Write("DELETE FROM attempts WHERE run_id=?", p) for p in ids]
            writes += [Write("DELETE FROM targets WHERE run_id=?", p) for p in ids]
            writes += [Write("DELETE FROM runs WHERE id=?", p) for p in ids]
            await self.db.write(writes)
            total += len(ids)
            await asyncio.sleep(0)

    async def prune_events(self, before_id: str) -> int:
        total = 0
        while True:
            n = await self.db.fetchval(
                "SELECT COUNT(*) FROM (SELECT id FROM events WHERE id < ? LIMIT ?)",
                (before_id, self.batch),
            )
            if not n:
                return total
            await self.db.write([Write(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? LIMIT ?)",
                (before_id, self.batch),
            )])
            total += int(n)
            await asyncio.sleep(0)
