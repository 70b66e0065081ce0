"""Age-based pruning of runs (with their targets, attempts and captured output) and events.

Theory of operation:
- Ids sort by creation time (core/ids.py), so "created before T" is the primary-key range
  ``id < id_floor(T)``: no created_at index, no table scan.
- Each step is ONE small function run by the group-commit writer inside its next batch
  (``Database.run_in_transaction``): select up to ``batch`` old, finished runs, delete their
  attempts (the captured output lives there), targets and rows. Selecting inside the writer's
  transaction makes the "not live" check and the delete atomic: a run that is still
  ``queued``/``running``/``retrying`` is never pruned, whatever its age.
- Never stall the writer: a step shares its batch with whatever the engine queued, so a
  step's cost is added to those writes' commit latency. The batch size adapts to keep a step
  near ``step_target`` seconds, and after each step the pruner pauses for as long as the step
  took, so pruning holds the writer at most about half of the time.
- The dead-letter queue is kept until purged: its rows are never touched, and a run with
  entries in it keeps its row (the entry's retry needs the run's payload and depth). Those
  run ids are read once per pass; entries added during the pass have ids above the newest
  one seen (ids grow), so each step picks them up with a primary-key range read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from automationd.clock import Clock
from automationd.config.model import RetentionConfig
from automationd.core.ids import id_floor
from automationd.store.db import Database

log = structlog.get_logger("automationd.retention")

_OLD_RUNS = (
    "SELECT id FROM runs WHERE id > ? AND id < ?"
    " AND state NOT IN ('queued', 'running', 'retrying') ORDER BY id LIMIT ?"
)
_OLD_EVENTS = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? ORDER BY id LIMIT ?)"
)
MIN_BATCH, MAX_BATCH = 50, 5000

_StepFn = Callable[[sqlite3.Connection], tuple[int, bool]]


@dataclass(slots=True)
class _Pass:
    """What one prune pass remembers between its steps (mutated only by the writer thread)."""

    before: str
    cursor: str = ""  # runs at or below this id were pruned or kept on purpose
    dlq_seen: str = ""  # newest dlq id read so far
    dlq_runs: set[str] = field(default_factory=set)


class Retention:
    """The pruner: ``run()`` is the daemon's background task, ``prune_once()`` one pass."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: RetentionConfig,
        *,
        batch: int = 1000,
        interval: float | None = None,
        first_delay: float | None = None,
        step_target: float = 0.008,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.batch = max(MIN_BATCH, min(MAX_BATCH, batch))
        self.interval = config.prune_interval if interval is None else interval
        self.first_delay = min(10.0, self.interval) if first_delay is None else first_delay
        self.step_target = step_target
        self.steps = 0
        self.step_seconds_max = 0.0

    async def run(self) -> None:
        """Prune soon after start, then every ``interval``; a failed pass is logged, not fatal."""
        await self._pause(self.first_delay)
        while True:
            try:
                await self.prune_once()
            except Exception:  # the store logs its own failure; pruning tries again later
                log.exception("retention.failed")
            await self._pause(self.interval)

    async def prune_once(self) -> dict[str, int]:
        now = self.clock.time()
        started = self.clock.monotonic()
        runs = await self.prune_runs(id_floor(now - self.config.runs_max_age))
        events = await self.prune_events(id_floor(now - self.config.events_max_age))
        if runs or events:
            log.info(
                "retention.pruned",
                runs=runs,
                events=events,
                steps=self.steps,
                batch=self.batch,
                step_max_s=round(self.step_seconds_max, 4),
                duration_s=round(self.clock.monotonic() - started, 3),
            )
        return {"runs": runs, "events": events}

    async def prune_runs(self, before_id: str) -> int:
        """Delete finished runs with ids below ``before_id`` (and their rows elsewhere)."""
        state = _Pass(before=before_id)
        total = 0
        while True:
            n, more = await self._step(lambda conn: self._prune_runs_step(conn, state))
            total += n
            if not more:
                return total

    async def prune_events(self, before_id: str) -> int:
        """Delete events with ids below ``before_id``."""
        total = 0
        while True:
            n, more = await self._step(lambda conn: self._prune_events_step(conn, before_id))
            total += n
            if not more:
                return total

    # ----------------------------------------------------------------- steps
    async def _step(self, fn: _StepFn) -> tuple[int, bool]:
        n, more, took = await self.db.run_in_transaction(lambda conn: self._timed(conn, fn))
        self.steps += 1
        self.step_seconds_max = max(self.step_seconds_max, took)
        if took > self.step_target:
            self.batch = max(MIN_BATCH, self.batch // 2)
        elif took < self.step_target / 2 and n >= self.batch:
            self.batch = min(MAX_BATCH, self.batch * 2)
        if more:
            # Leave the writer to the engine for as long as this step held it.
            await self._pause(min(0.25, took))
        return n, more

    def _timed(self, conn: sqlite3.Connection, fn: _StepFn) -> tuple[int, bool, float]:
        t0 = self.clock.monotonic()
        n, more = fn(conn)
        return n, more, self.clock.monotonic() - t0

    def _prune_runs_step(self, conn: sqlite3.Connection, p: _Pass) -> tuple[int, bool]:
        self._note_dlq(conn, p)
        rows = conn.execute(_OLD_RUNS, (p.cursor, p.before, self.batch)).fetchall()
        if not rows:
            return 0, False
        p.cursor = rows[-1][0]
        ids = [(r[0],) for r in rows if r[0] not in p.dlq_runs]
        conn.executemany("DELETE FROM attempts WHERE run_id=?", ids)
        conn.executemany("DELETE FROM targets WHERE run_id=?", ids)
        conn.executemany("DELETE FROM runs WHERE id=?", ids)
        return len(ids), len(rows) >= self.batch

    @staticmethod
    def _note_dlq(conn: sqlite3.Connection, p: _Pass) -> None:
        for dlq_id, run_id in conn.execute(
            "SELECT id, run_id FROM dlq WHERE id > ? ORDER BY id", (p.dlq_seen,)
        ):
            p.dlq_runs.add(run_id)
            p.dlq_seen = dlq_id

    def _prune_events_step(self, conn: sqlite3.Connection, before_id: str) -> tuple[int, bool]:
        n = conn.execute(_OLD_EVENTS, (before_id, self.batch)).rowcount
        return n, n >= self.batch

    async def _pause(self, seconds: float) -> None:
        await self.clock.sleep_until(self.clock.monotonic() + seconds)
