"""How a run ends: its end row and ``run.<state>`` event, its dead letters, and the report.

Rules:
- A run's end row and its ``run.<state>`` event row go out as ONE unit, with the end row of
  its last attempt (engine/attempt.py): after a crash all are on disk or none (then recovery
  resumes the run and it ends again, its last attempt recorded as interrupted).
- That unit is *deferrable* (store/api.py): nobody waits for it, so it rides in the next
  commit someone waits for (a trigger, an attempt's start), or goes 2 ms later; each run's
  end is a unit of its own (a fleet's store refuses a unit whole when a run of it was taken
  over by another daemon).
- The unit must land: if its batch fails (disk full) the writer retries it until it is stored
  (store/writer.py rule 6); the run has left memory meanwhile, nothing is lost.
- The end is reported (metrics, the ``run.finished`` line, the event handed to its listeners
  through the outbox) only once that unit is durable, from the write's settlement.
- One owner per counter: the dead-letter count lives in ``DlqCount`` and changes only there;
  a job's counters change only through ``JobRuntime``'s own methods.
- A run publishes its ``run.<state>`` event once, when its work ends: a rollback that ends
  it again (``rolled_back``, or ``failed`` when something could not be undone) publishes none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.core.runstate import RunEvent, RunState, next_run_state
from automationd.engine.jobs import JobRuntime, w_job_of
from automationd.engine.live import LiveRun, LiveTarget
from automationd.engine.outbox import Outbox
from automationd.obs.metrics import Metrics
from automationd.records import (
    DlqEntry,
    Event,
    Phase,
    Run,
    RunError,
    Trigger,
    json_id,
    json_name,
)
from automationd.store.api import Store, Write
from automationd.store.rows import w_dlq, w_event_row, w_run, w_target

log = structlog.get_logger("automationd.engine")

_OUTCOMES = frozenset({RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED})


class DlqCount:
    """The dead-letter queue's size, kept in memory for ``status`` and the gauge."""

    def __init__(self, metrics: Metrics, value: int = 0) -> None:
        self._gauge = metrics.dlq_size
        self.value = value
        self._gauge.set(value)

    def add(self, n: int = 1) -> None:
        self.value += n
        self._gauge.set(self.value)

    def remove(self, n: int) -> None:
        self.value = max(0, self.value - n)
        self._gauge.set(self.value)


class Report:
    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        store: Store,
        metrics: Metrics,
        dlq: DlqCount,
        outbox: Outbox,
        listening: Callable[[str], Sequence[Any]],
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._store = store
        self._metrics = metrics
        self.dlq = dlq
        self._outbox = outbox
        self._listening = listening
        # Asked once: even a filtered-out log call costs more than a run's metrics.
        self._log_runs = log.is_enabled_for(logging.INFO)

    # -- ending ---------------------------------------------------------------------------
    def end(
        self,
        live: LiveRun,
        event: RunEvent,
        *,
        error: RunError | None = None,
        reason: str | None = None,
        result: Any = None,
    ) -> Run:
        """End the run; it is reported once its end (and its event) is durable."""
        now = self._clock.time()
        was = live.state
        live.state = next_run_state(live.state, event)
        live.finished_at = now
        live.error = error
        live.reason = reason
        if result is not None:
            live.result = result
        job = live.job
        job.note_end(live.state.value, now)
        run = live.snapshot()
        writes = live.riding([w_run(run), w_job_of(job)])
        event_id = None
        if run.state in _OUTCOMES and was is not RunState.ROLLING_BACK:
            event_id = self._ids.new(now)
            writes.append(self._event_row(run, event_id, now))
        try:
            self._store.submit_then(
                writes, partial(self._settled, run, job, event_id), retry=True, defer=True
            )
        except Exception as exc:  # the store refused it (closing): the run ends again after
            # the next start, since recovery resumes runs whose end was never stored
            log.error("run.end_not_stored", run_id=run.id, error=str(exc))
        return run

    def end_jobless(self, run: Run, error: RunError) -> None:
        """A stored run whose job no longer exists (found by recovery) fails like any other
        run: its end row and ``run.failed`` event as one unit that must land. There is no
        job to count it on, so no job metrics; the event reaches its listeners."""
        now = self._clock.time()
        ended = replace(
            run,
            state=next_run_state(run.state, RunEvent.FAIL),
            finished_at=now,
            error=error,
        )
        event_id = self._ids.new(now)
        writes = [w_run(ended), self._event_row(ended, event_id, now)]
        self._store.submit_then(writes, partial(self._jobless_settled, ended, event_id), retry=True)

    def _jobless_settled(self, run: Run, event_id: str, exc: BaseException | None) -> None:
        if exc is not None:  # refused (another daemon holds the run now): nothing published
            log.warning("run.end_refused", run_id=run.id, job=run.job, error=str(exc))
            return
        log.warning("run.failed_jobless", run_id=run.id, job=run.job, error=str(run.error))
        self._metrics.events_published_total.inc()
        if self._listening("run.failed"):
            payload = {"job": run.job, "run_id": run.id, "state": run.state.value}
            self._outbox.put(
                Event(
                    id=event_id,
                    name="run.failed",
                    payload=payload,
                    created_at=run.finished_at or 0.0,
                    depth=run.depth + 1,
                )
            )

    def skipped(
        self,
        job: JobRuntime,
        *,
        trigger: Trigger,
        scheduled_for: float | None,
        reason: str,
        made: LiveRun | None = None,
    ) -> Run:
        """A fire that the overlap policy skipped still leaves a trace: a ``skipped`` run
        (``made``: the run made ahead for that fire, engine/ahead.py, ends so)."""
        now = self._clock.time()
        run = Run(
            id=self._ids.new(now) if made is None else made.id,
            job=job.name,
            state=next_run_state(RunState.QUEUED, RunEvent.SKIP),  # a fire that never ran
            trigger=trigger,
            created_at=now if made is None else made.created_at,
            scheduled_for=scheduled_for,
            finished_at=now,
            reason=reason,
        )
        job.count_run(run.id, counted=False)
        job.note_end(run.state.value, now)
        self._store.post([w_run(run), w_job_of(job)])
        job.meters_on(self._metrics).run_ended(run.state.value, None, now)
        return run

    def dead_letter(
        self, live: LiveRun, target: LiveTarget, err: RunError, phase: Phase = Phase.PERFORM
    ) -> None:
        """A target that exhausted its retries or failed fatally goes to the DLQ (``phase``
        undo: its rollback did; retrying that entry undoes it again)."""
        now = self._clock.time()
        entry = DlqEntry(
            id=self._ids.new(now),
            run_id=live.id,
            job=live.job_name,
            target=target.value,
            target_idx=target.idx if live.persist_targets else -1,
            error=err,
            failed_at=now,
            phase=phase,
        )
        writes = live.riding([w_dlq(entry)])
        if live.persist_targets:
            writes.append(w_target(target.snapshot(live.id)))
        self._store.post(writes)
        self.dlq.add()
        log.warning(
            "target.dead_lettered",
            run_id=live.id,
            job=live.job_name,
            target=target.value,
            kind=err.kind.value,
            error=err.message,
            phase=phase.value,
        )

    async def settle(self) -> None:
        """Wait until every end reported so far is durable (and its report made)."""
        await self._store.commit([])

    # -- reporting ------------------------------------------------------------------------
    def _event_row(self, run: Run, event_id: str, at: float) -> Write:
        """The ``run.<state>`` event, as its row only (its payload as JSON text, without
        json.dumps: one is written per run, and most are never read back)."""
        state = run.state.value
        text = f'{{"job":{json_name(run.job)},"run_id":{json_id(run.id)},"state":"{state}"}}'
        return w_event_row(event_id, f"run.{state}", text, at, None, run.depth + 1)

    def _settled(
        self, run: Run, job: JobRuntime, event_id: str | None, exc: BaseException | None
    ) -> None:
        if exc is not None:  # refused (another daemon holds the run now): not ours to tell
            log.warning("run.end_refused", run_id=run.id, job=job.name, error=str(exc))
            return
        try:
            self._report(run, job, event_id)
        except Exception:  # the run has ended either way
            log.exception("run.report_failed", run_id=run.id, job=job.name)

    def _report(self, run: Run, job: JobRuntime, event_id: str | None) -> None:
        now = run.finished_at or self._clock.time()
        duration = now - run.started_at if run.started_at is not None else None
        job.meters_on(self._metrics).run_ended(run.state.value, duration, now)
        if self._log_runs:
            log.info(
                "run.finished",
                run_id=run.id,
                job=job.name,
                state=run.state.value,
                attempts=run.attempts,
                duration_s=round(duration or 0.0, 6),
            )
        if event_id is not None:  # the end stored a ``run.<state>`` event: it is published
            self._metrics.events_published_total.inc()
            name = f"run.{run.state.value}"
            if self._listening(name):
                payload = {"job": run.job, "run_id": run.id, "state": run.state.value}
                self._outbox.put(
                    Event(
                        id=event_id, name=name, payload=payload, created_at=now, depth=run.depth + 1
                    )
                )
