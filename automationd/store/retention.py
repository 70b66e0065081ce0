"""Age-based pruning of runs (with their targets, attempts and captured output) and events.

Theory of operation:
- Ids sort by creation time (core/ids.py), so "created before T" is the primary-key range
  ``id < id_floor(T)``: no created_at index, no table scan.
- Each step is ONE small store call (``Store.prune_runs_step``): up to ``batch`` old,
  finished runs go, with their attempts (the captured output lives there) and targets. The
  backend makes the "not live" check and the delete atomic: a run that is still
  ``queued``/``running``/``retrying`` is never pruned, whatever its age.
- Never stall the writer: a step shares its batch with whatever the engine queued, so a
  step's cost is added to those writes' commit latency. The batch size adapts to keep a step
  near ``step_target`` seconds, and after each step the pruner pauses for as long as the step
  took, so pruning holds the writer at most about half of the time.
- The audit trail is kept as long as runs (``runs_max_age``), pruned the same way as events.
- The dead-letter queue is kept until purged: its rows are never touched, and a run with
  entries in it keeps its row (the entry's retry needs the run's payload and depth).
"""

from __future__ import annotations

import structlog

from automationd.clock import Clock
from automationd.config.model import RetentionConfig
from automationd.core.ids import id_floor
from automationd.errors import StoreError
from automationd.store.api import PrunePass, Store

log = structlog.get_logger("automationd.retention")

MIN_BATCH, MAX_BATCH = 50, 5000


class Retention:
    """The pruner: ``run()`` is the daemon's background task, ``prune_once()`` one pass."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: RetentionConfig,
        *,
        batch: int = 1000,
        interval: float | None = None,
        first_delay: float | None = None,
        step_target: float = 0.008,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.batch = max(MIN_BATCH, min(MAX_BATCH, batch))
        self.interval = config.prune_interval if interval is None else interval
        self.first_delay = min(10.0, self.interval) if first_delay is None else first_delay
        self.step_target = step_target
        self.steps = 0
        self.step_seconds_max = 0.0
        self._last = 0.0

    async def run(self) -> None:
        """Prune soon after start, then every ``interval``; a failed pass is logged, not fatal."""
        await self._pause(self.first_delay)
        while True:
            try:
                await self.prune_once()
            except StoreError as exc:  # the store logs its own failure episode, once
                log.warning("retention.skipped", error=str(exc))
            except Exception:  # a bug: pruning tries again later
                log.exception("retention.failed")
            await self._pause(self.interval)

    async def prune_once(self) -> dict[str, int]:
        now = self.clock.time()
        started = self.clock.monotonic()
        runs = await self.prune_runs(id_floor(now - self.config.runs_max_age))
        events = await self.prune_events(id_floor(now - self.config.events_max_age))
        audit = await self.prune_audit(id_floor(now - self.config.runs_max_age))
        if runs or events or audit:
            log.info(
                "retention.pruned",
                runs=runs,
                events=events,
                audit=audit,
                steps=self.steps,
                batch=self.batch,
                step_max_s=round(self.step_seconds_max, 4),
                duration_s=round(self.clock.monotonic() - started, 3),
            )
        return {"runs": runs, "events": events}  # audit pruning is logged, not counted here

    async def prune_runs(self, before_id: str) -> int:
        """Delete finished runs with ids below ``before_id`` (and their rows elsewhere)."""
        prune = PrunePass(before=before_id)
        total = 0
        while True:
            n, more = self._paced(*await self.store.prune_runs_step(prune, self.batch))
            total += n
            if not more:
                return total
            await self._pause(min(0.25, self._last))

    async def prune_events(self, before_id: str) -> int:
        """Delete events with ids below ``before_id``."""
        total = 0
        while True:
            n, more = self._paced(*await self.store.prune_events_step(before_id, self.batch))
            total += n
            if not more:
                return total
            await self._pause(min(0.25, self._last))

    async def prune_audit(self, before_id: str) -> int:
        """Delete audit entries with ids below ``before_id`` (kept as long as runs)."""
        total = 0
        while True:
            n, more = self._paced(*await self.store.prune_audit_step(before_id, self.batch))
            total += n
            if not more:
                return total
            await self._pause(min(0.25, self._last))

    def _paced(self, n: int, more: bool, took: float) -> tuple[int, bool]:
        """Adapt the batch to keep a step near ``step_target``; the caller then leaves the
        writer to the engine for as long as the step held it."""
        self.steps += 1
        self._last = took
        self.step_seconds_max = max(self.step_seconds_max, took)
        if took > self.step_target:
            self.batch = max(MIN_BATCH, self.batch // 2)
        elif took < self.step_target / 2 and n >= self.batch:
            self.batch = min(MAX_BATCH, self.batch * 2)
        return n, more

    async def _pause(self, seconds: float) -> None:
        await self.clock.sleep_until(self.clock.monotonic() + seconds)
