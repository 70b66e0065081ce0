"""The event bus: publish, match triggers, store history, replay, and run-outcome events.

Theory of operation:
- ``publish`` stores the event and creates the runs of every enabled listener whose ``on`` glob
  matches and whose ``when`` fields equal the payload's, in ONE submitted unit (one writer
  entry, so one transaction), and answers once it is durable: an answered publish has its
  event row and its run rows on disk, or neither.
- An ``idempotency_key`` makes a re-publish return the first event and start nothing new.
  The first publisher registers a future synchronously (before any await), so concurrent
  publishers with the same key share its answer and the unique index is never hit.
- Runs ending ``succeeded``/``partial``/``failed`` publish ``run.<state>`` one level deeper
  (an event's depth = its cause's depth + 1; published events have depth 0, and a run gets
  the depth of the event that started it). An event at depth ``max_depth`` or more is stored
  but triggers nothing, logged as ``event.depth_limit``: a chain holds at most ``max_depth``
  runs, so a job that triggers itself cannot loop forever.
  A ``run.*`` event row is written in the same unit as the run's end row (engine/report.py),
  so the two are durable together; the report puts the event in the outbox once they are,
  and this bus's delivery task (``deliver_forever``) starts its listeners' runs.
- ``replay`` re-delivers stored events to the triggers as they are now. Each run gets the
  idempotency key ``replay:<event id>`` (unique per (job, key), i.e. per (event, job)), so
  replaying a window twice starts nothing new unless forced. Replays are serialised: two
  concurrent replays of one window must not both pass the "not replayed yet" check, because a
  duplicate key would fail the whole group-commit batch it rides in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.core.match import when_match
from automationd.engine.jobs import JobRuntime, JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.live import LiveRun
from automationd.engine.once import OncePerKey
from automationd.engine.outbox import Outbox
from automationd.errors import StoreError
from automationd.obs.metrics import Metrics
from automationd.records import Event, Trigger
from automationd.store.api import Store
from automationd.store.rows import w_event

log = structlog.get_logger("automationd.events")

DEFAULT_MAX_DEPTH = 16
_REPLAY_CHUNK = 500  # runs per submitted unit during a replay: bounded writer entries


class EventBus:
    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        launcher: Launcher,
        jobs: JobTable,
        store: Store,
        outbox: Outbox,
        metrics: Metrics,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._launcher = launcher
        self.jobs = jobs
        self._store = store
        self._outbox = outbox
        self.metrics = metrics
        self.max_depth = max_depth
        self._once: OncePerKey[tuple[Event, list[str]]] = OncePerKey()
        self._replaying = asyncio.Lock()

    # ----------------------------------------------------------------- publish
    async def publish(
        self,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        depth: int = 0,
    ) -> tuple[Event, list[str], bool]:
        """Store the event and start its runs; ``existing`` is True for a repeated key."""
        if idempotency_key is None:
            event, triggered = await self._emit(name, payload, None, depth)
            return event, triggered, False
        key = idempotency_key

        async def lookup() -> tuple[Event, list[str]] | None:
            old = await self._store.event_by_key(key)  # from an earlier life
            return None if old is None else (old, await self._store.event_runs(old))

        async def create() -> tuple[Event, list[str]]:
            return await self._emit(name, payload, key, depth)

        try:
            (event, triggered), existing = await self._once.get_or_create(key, lookup, create)
        except StoreError as exc:
            # another daemon of the fleet stored this key first (store/pg/committer.py)
            found = await lookup() if exc.kind == "duplicate" else None
            if found is None:
                raise
            (event, triggered), existing = found, True
        return event, triggered, existing

    async def _emit(
        self, name: str, payload: Any, key: str | None, depth: int
    ) -> tuple[Event, list[str]]:
        """Store the event and start its runs in one unit; return once it is durable."""
        now = self._clock.time()  # one reading: the id's millisecond is created_at's
        event = Event(
            id=self._ids.new(now),
            name=name,
            payload=payload,
            created_at=now,
            idempotency_key=key,
            depth=depth,
        )
        self.metrics.events_published_total.inc()
        lives = self._runs_for(event)
        await self._launcher.start(lives, [w_event(event)])
        return event, [live.id for live in lives]

    def _runs_for(self, event: Event) -> list[LiveRun]:
        """The runs an event starts (prepared, not submitted)."""
        matched = self._listeners_of(event.name, event.payload)
        if not matched:
            return []
        if event.depth >= self.max_depth:
            log.warning(
                "event.depth_limit",
                name=event.name,
                event_id=event.id,
                depth=event.depth,
                limit=self.max_depth,
                jobs=[j.name for j in matched],
            )
            return []
        return [
            self._launcher.prepare(
                job,
                trigger=Trigger.EVENT,
                payload=event.payload,
                depth=event.depth,
                origin=event.id,
            )
            for job in matched
        ]

    def _listeners_of(self, name: str, payload: Any) -> list[JobRuntime]:
        return [
            job
            for job in self.jobs.listening(name)
            if job.enabled and when_match(job.spec.when, payload)
        ]

    # ----------------------------------------------------------------- run outcomes
    async def deliver_forever(self) -> None:
        """Start the listeners' runs of stored ``run.*`` events (the report's outbox)."""
        while True:
            for event in await self._outbox.take():
                lives = self._runs_for(event)
                if lives:
                    try:
                        self._launcher.launch(lives)
                    except Exception as exc:  # the store is closing: they are not stored
                        log.error("event.delivery_failed", event_id=event.id, error=str(exc))

    # ----------------------------------------------------------------- replay
    async def replay(
        self, *, since: float, until: float | None, name: str | None, force: bool
    ) -> tuple[int, list[str]]:
        """Re-deliver stored events in [since, until] to the triggers as they are now.

        Returns (events in the window, ids of the runs started); runs are durable on return.
        """
        async with self._replaying:
            events = await self._store.events(
                since=since, until=until, limit=None, newest_first=False, name=name
            )
            lives: list[LiveRun] = []
            started: list[str] = []
            for event in events:
                if event.depth >= self.max_depth:
                    continue  # it was cut when published; a replay must not extend the chain
                for job in self._listeners_of(event.name, event.payload):
                    key = None if force else f"replay:{event.id}"
                    if key is not None and await self._store.run_by_key(job.name, key):
                        continue
                    live = self._launcher.prepare(
                        job,
                        trigger=Trigger.REPLAY,
                        payload=event.payload,
                        idempotency_key=key,
                        depth=event.depth,
                        origin=event.id,
                    )
                    lives.append(live)
                    if len(lives) >= _REPLAY_CHUNK:
                        started += await self._launch(lives)
                        lives = []
            started += await self._launch(lives)
        log.info("events.replayed", events=len(events), runs=len(started), force=force)
        return len(events), started

    async def _launch(self, lives: Sequence[LiveRun]) -> list[str]:
        if not lives:
            return []
        await self._launcher.start(lives)
        return [live.id for live in lives]
