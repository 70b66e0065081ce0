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
  A ``run.*`` event row is written in the same unit as the run's end row (``outcome``), so
  the two are durable together; its listeners' runs start after that (``deliver``).
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

from automationd.core.match import when_match
from automationd.core.runstate import RunState
from automationd.engine.dispatcher import Engine, LiveRun
from automationd.engine.jobs import JobRuntime, JobTable
from automationd.engine.once import OncePerKey
from automationd.obs.metrics import Metrics
from automationd.records import Event, Run, Trigger, json_id, json_name
from automationd.store.db import Write
from automationd.store.events import EventStore, w_event, w_event_row
from automationd.store.runs import RunStore

log = structlog.get_logger("automationd.events")

DEFAULT_MAX_DEPTH = 16
_REPLAY_CHUNK = 500  # runs per submitted unit during a replay: bounded writer entries
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
            event, triggered, durable = self._emit(name, payload, None, depth)
            await durable
            return event, triggered, False
        key = idempotency_key

        async def lookup() -> tuple[Event, list[str]] | None:
            old = await self.events.by_key(key)  # from an earlier life
            return None if old is None else (old, await self.events.run_ids_of(old))

        async def create() -> tuple[Event, list[str]]:
            event, triggered, durable = self._emit(name, payload, key, depth)
            await durable
            return event, triggered

        (event, triggered), existing = await self._once.get_or_create(key, lookup, create)
        return event, triggered, existing

    def _emit(
        self, name: str, payload: Any, key: str | None, depth: int
    ) -> tuple[Event, list[str], asyncio.Future[None]]:
        """Store the event and start its runs in one submitted unit; nothing awaited."""
        engine = self.engine
        now = engine.clock.time()  # one reading: the id's millisecond is created_at's
        event = Event(
            id=engine.ids.new(now),
            name=name,
            payload=payload,
            created_at=now,
            idempotency_key=key,
            depth=depth,
        )
        self.metrics.events_published_total.inc()
        lives, writes = self._runs_for(event)
        writes.insert(0, w_event(event))
        durable = engine.launched(lives, writes)
        return event, [live.run.id for live in lives], durable

    def _runs_for(self, event: Event) -> tuple[list[LiveRun], list[Write]]:
        """The runs an event starts (prepared, not submitted)."""
        lives: list[LiveRun] = []
        writes: list[Write] = []
        matched = self._listeners_of(event.name, event.payload)
        if not matched:
            return lives, writes
        if event.depth >= self.max_depth:
            log.warning(
                "event.depth_limit",
                name=event.name,
                event_id=event.id,
                depth=event.depth,
                limit=self.max_depth,
                jobs=[j.name for j in matched],
            )
            return lives, writes
        for job in matched:
            live, w = self.engine.prepare_run(
                job,
                trigger=Trigger.EVENT,
                payload=event.payload,
                depth=event.depth,
                origin=event.id,
            )
            lives.append(live)
            writes.extend(w)
        return lives, writes

    def _listeners_of(self, name: str, payload: Any) -> list[JobRuntime]:
        return [
            job
            for job in self.jobs.listening(name)
            if job.enabled and when_match(job.spec.when, payload)
        ]

    # ----------------------------------------------------------------- run outcomes
    def outcome(self, run: Run) -> tuple[str, Write] | None:
        """The id and the row of the ``run.<state>`` event of a run that just ended.

        The engine writes that row in the same unit as the run's end (engine/ending.py), so
        the two are durable together, and calls ``deliver`` once they are. The event is made
        of the run (its name, payload and depth; its time is the run's end), so only its id
        and its row exist until then: most have no listener, and need no more.
        """
        if run.state not in _OUTCOMES:
            return None
        state = run.state.value
        at = run.finished_at if run.finished_at is not None else self.engine.clock.time()
        event_id = self.engine.ids.new(at)
        # The payload as JSON text, without json.dumps: one of these is written per run.
        text = f'{{"job":{json_name(run.job)},"run_id":{json_id(run.id)},"state":"{state}"}}'
        return event_id, w_event_row(event_id, f"run.{state}", text, at, None, run.depth + 1)

    def deliver(self, run: Run, event_id: str) -> None:
        """Start the runs of a stored ``run.*`` event's listeners (each starts once durable)."""
        self.metrics.events_published_total.inc()
        state = run.state.value
        name = f"run.{state}"
        if not self.jobs.listening(name):
            return
        event = Event(
            id=event_id,
            name=name,
            payload={"job": run.job, "run_id": run.id, "state": state},
            created_at=run.finished_at or 0.0,
            idempotency_key=None,
            depth=run.depth + 1,
        )
        lives, writes = self._runs_for(event)
        if lives:
            self.engine.launch(lives, writes)

    # ----------------------------------------------------------------- replay
    async def replay(
        self, *, since: float, until: float | None, name: str | None, force: bool
    ) -> tuple[int, list[str]]:
        """Re-deliver stored events in [since, until] to the triggers as they are now.

        Returns (events in the window, ids of the runs started); runs are durable on return.
        """
        async with self._replaying:
            events = await self.events.window(
                since=since, until=until, limit=None, newest_first=False, name=name
            )
            lives: list[LiveRun] = []
            writes: list[Write] = []
            started: list[str] = []
            for event in events:
                if event.depth >= self.max_depth:
                    continue  # it was cut when published; a replay must not extend the chain
                for job in self._listeners_of(event.name, event.payload):
                    key = None if force else f"replay:{event.id}"
                    if key is not None and await self.runs.by_key(job.name, key) is not None:
                        continue
                    live, w = self.engine.prepare_run(
                        job,
                        trigger=Trigger.REPLAY,
                        payload=event.payload,
                        idempotency_key=key,
                        depth=event.depth,
                        origin=event.id,
                    )
                    lives.append(live)
                    writes.extend(w)
                    if len(lives) >= _REPLAY_CHUNK:
                        started += await self._launch(lives, writes)
                        lives, writes = [], []
            started += await self._launch(lives, writes)
        log.info("events.replayed", events=len(events), runs=len(started), force=force)
        return len(events), started

    async def _launch(self, lives: Sequence[LiveRun], writes: Sequence[Write]) -> list[str]:
        if not lives:
            return []
        await self.engine.launched(lives, writes)
        return [live.run.id for live in lives]
