"""The event bus: publish, match triggers, store history, replay, and run-outcome events.

- ``publish`` stores the event and creates the runs of every enabled listener whose ``on`` glob
  matches and whose ``when`` fields equal the payload's, in ONE submitted unit (one
  transaction), and answers once it is durable.
- An ``idempotency_key`` makes a re-publish return the first event and start nothing new
  (same synchronous-registration trick as engine/intake.py).
- Runs ending ``succeeded``/``partial``/``failed`` publish ``run.<state>`` one level deeper;
  past ``max_depth`` the event is stored but triggers nothing (logged), so a job that
  triggers itself cannot loop forever.
- ``replay`` re-delivers stored events to the triggers as they are now, with an idempotency
  key per (event, job) so replaying a window twice starts nothing new unless forced.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import structlog

from automationd.core.match import event_matches, glob_match
from automationd.core.runstate import RunState
from automationd.engine.dispatcher import Engine, LiveRun
from automationd.engine.jobs import JobTable
from automationd.obs.metrics import Metrics
from automationd.records import Event, Run, Trigger
from automationd.store.db import Write
from automationd.store.events import EventStore, w_event
from automationd.store.runs import RunStore

log = structlog.get_logger("automationd.events")

DEFAULT_MAX_DEPTH = 16
_OUTCOMES = frozenset({RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED})


class EventBus:
    def __init__(
        self,
        *,
        engine: Engine,
        jobs: JobTable,
        events: EventStore,
        runs: RunStore,
        metrics: Metrics,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.engine = engine
        self.jobs = jobs
        self.events = events
        self.runs = runs
        self.metrics = metrics
        self.max_depth = max_depth
        self._keys: OrderedDict[str, asyncio.Future[tuple[Event, list[str]]]] = OrderedDict()

    async def publish(
        self, name: str, payload: Any = None, *, idempotency_key: str | None = None,
        depth: int = 0,
    ) -> tuple[Event, list[str], bool]:
        """Store the event and start its runs; ``existing`` is True for a repeated key."""
        if idempotency_key is None:
            event, triggered = await self._publish(name, payload, None, depth)
            return event, triggered, False
        seen = self._keys.get(idempotency_key)
        if seen is not None:
            event, triggered = await asyncio.shield(seen)
            return event, triggered, True
        mine: asyncio.Future[tuple[Event, list[str]]] = asyncio.get_running_loop().create_future()
        self._keys[idempotency_key] = mine
        if len(self._keys) > 100_000:
            self._keys.popitem(last=False)
        try:
            old = await self.events.by_key(idempotency_key)
            if old is not None:
                triggered = [r.id for r in await self._runs_of_event(old.id)]
                mine.set_result((old, triggered))
                return old, triggered, True
            result = await self._publish(name, payload, idempotency_key, depth)
        except BaseException as exc:
            self._keys.pop(idempotency_key, None)
            if not mine.done():
                mine.set_exception(exc)
                mine.exception()
            raise
        mine.set_result(result)
        return result[0], result[1], False

    async def _publish(
        self, name: str, payload: Any, key: str | None, depth: int
    ) -> tuple[Event, list[str]]:
        event, triggered, durable = self._emit(name, payload, key, depth)
        await durable
        return event, triggered

    def _emit(
        self, name: str, payload: Any, key: str | None, depth: int
    ) -> tuple[Event, list[str], asyncio.Future[None]]:
        """Store the event and start its runs in one submitted unit; nothing awaited."""
        engine = self.engine
        event = Event(id=engine.new_id(), name=name, payload=payload,
                      created_at=engine.clock.time(), idempotency_key=key, depth=depth)
        writes: list[Write] = [w_event(event)]
        lives: list[LiveRun] = []
        if depth > self.max_depth:
            log.warning("event.depth_limit", name=name, event_id=event.id, depth=depth,
                        limit=self.max_depth)
        else:
            for job in self.jobs.listeners.values():
                if job.enabled and event_matches(job.spec.on, job.spec.when, name, payload):
                    live, w = engine.prepare_run(job, trigger=Trigger.EVENT, payload=payload,
                                                 depth=depth, origin=event.id)
                    lives.append(live)
                    writes.extend(w)
        durable = engine.launch(lives, writes)
        self.metrics.events_published_total.inc()
        return event, [live.run.id for live in lives], durable

    async def _runs_of_event(self, event_id: str) -> list[Run]:
        rows = await self.runs.db.fetchall(
            "SELECT id FROM runs WHERE origin=? ORDER BY id", (event_id,)
        )
        return [r for r in [await self.runs.get(row["id"]) for row in rows] if r is not None]

    async def on_run_end(self, run: Run) -> None:
        """Publish ``run.<state>`` so jobs can chain on each other's outcomes.

        Not awaited for durability: the event and the runs it starts are submitted as one
        unit after the run's own end state, so they are durable no later than anything
        that could report them, and each started run waits for that unit itself.
        """
        if run.state not in _OUTCOMES:
            return
        self._emit(f"run.{run.state.value}",
                   {"job": run.job, "run_id": run.id, "state": run.state.value}, None,
                   run.depth + 1)

    async def replay(
        self, *, since: float, until: float | None, name: str | None, force: bool
    ) -> tuple[int, list[str]]:
        """Re-deliver stored events in [since, until] to the triggers as they are now."""
        events = await self.events.window(since=since, until=until, limit=None,
                                          newest_first=False)
        if name is not None:
            events = [e for e in events if glob_match(name, e.name)]
        engine = self.engine
        lives: list[LiveRun] = []
        writes: list[Write] = []
        for event in events:
            for job in list(self.jobs.listeners.values()):
                if not job.enabled or not event_matches(job.spec.on, job.spec.when, event.name,
                                                        event.payload):
                    continue
                key = None if force else f"replay:{event.id}"
                if key is not None and await self.runs.by_key(job.name, key) is not None:
                    continue
                live, w = engine.prepare_run(
                    job, trigger=Trigger.REPLAY, payload=event.payload, idempotency_key=key,
                    depth=event.depth, origin=event.id,
                )
                lives.append(live)
                writes.extend(w)
        if writes:
            await engine.launch(lives, writes)
        return len(events), [live.run.id for live in lives]
