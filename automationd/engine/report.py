"""How a run ends: its end row and ``run.<state>`` event, its dead letters, and the report.

Rules:
- A run's end row and its ``run.<state>`` event row go out as ONE unit, with the end row of
  its last attempt (engine/attempt.py): after a crash all are on disk or none (then recovery
  resumes the run and it ends again, its last attempt recorded as interrupted).
- The ends of one loop turn are written as one unit (``_flush``, at the end of the turn):
  one writer entry, one job row per job, the metrics applied once per job. Why: the ends of a
  herd of scheduled runs (2,000 due at once) then cost their action starts almost nothing;
  each end only changes the run in memory until the turn's flush.
- The unit must land: if its batch fails (disk full) the writer retries it until it is stored
  (store/writer.py rule 6); the run has left memory meanwhile, nothing is lost.
- The end is reported (metrics, the ``run.finished`` line, the event handed to its listeners
  through the outbox) only once that unit is durable, from the write's settlement.
- One owner per counter: the dead-letter count lives in ``DlqCount`` and changes only there;
  a job's counters change only through ``JobRuntime``'s own methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.core.runstate import RunEvent, RunState, next_run_state
from automationd.engine.jobs import JobRuntime, w_job_of
from automationd.engine.live import LiveRun, LiveTarget
from automationd.engine.outbox import Outbox
from automationd.obs.metrics import JobMetrics, Metrics
from automationd.records import DlqEntry, Event, Run, RunError, Trigger, json_id, json_name
from automationd.store.api import Store, Write
from automationd.store.rows import RunView, w_dlq, w_event_row, w_run, w_target

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
        self._ending: list[tuple[LiveRun, list[Write]]] = []  # this turn's ends, unwritten

    # -- ending ---------------------------------------------------------------------------
    def end(
        self,
        live: LiveRun,
        event: RunEvent,
        *,
        error: RunError | None = None,
        reason: str | None = None,
        result: Any = None,
    ) -> None:
        """End the run; it is written at the end of the loop turn and reported once that
        is durable.

        The run's row is written from the ``LiveRun`` itself and the report reads it too (no
        snapshot record): nothing changes a run after its end.
        """
        now = self._clock.time()
        state = live.state = next_run_state(live.state, event)
        live.finished_at = now
        live.error = error
        live.reason = reason
        if result is not None:
            live.result = result
        live.job.note_end(state.value, now)
        ending = self._ending
        ending.append((live, live.riding([])))
        if len(ending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write this turn's ends as one unit (see the rules)."""
        ending, self._ending = self._ending, []
        if not ending:
            return
        writes: list[Write] = []
        event_ids: list[str | None] = []
        jobs: dict[str, JobRuntime] = {}
        for live, closes in ending:
            writes += closes
            writes.append(w_run(live))
            event_id = None
            if live.state in _OUTCOMES:
                at = live.finished_at or 0.0
                event_id = self._ids.new(at)
                writes.append(self._event_row(live, event_id, at))
            event_ids.append(event_id)
            jobs[live.job.name] = live.job
        writes.extend(w_job_of(job) for job in jobs.values())
        lives = [live for live, _ in ending]
        try:
            self._store.submit_then(
                writes, partial(self._settled, lives, event_ids), retry=True, defer=True
            )
        except Exception as exc:  # the store refused it (closing): these runs end again after
            # the next start, since recovery resumes runs whose end was never stored
            for live in lives:
                log.error("run.end_not_stored", run_id=live.id, error=str(exc))

    def skipped(
        self, job: JobRuntime, *, trigger: Trigger, scheduled_for: float | None, reason: str
    ) -> Run:
        """A fire that the overlap policy skipped still leaves a trace: a ``skipped`` run."""
        now = self._clock.time()
        run = Run(
            id=self._ids.new(now),
            job=job.name,
            state=RunState.SKIPPED,
            trigger=trigger,
            created_at=now,
            scheduled_for=scheduled_for,
            finished_at=now,
            reason=reason,
        )
        job.count_run(run.id, counted=False)
        job.note_end(RunState.SKIPPED.value, now)
        self._store.post([w_run(run), w_job_of(job)])
        meters(job, self._metrics).run_ended("skipped", None, now)
        return run

    def dead_letter(self, live: LiveRun, target: LiveTarget, err: RunError) -> None:
        """A target that exhausted its retries or failed fatally goes to the DLQ."""
        now = self._clock.time()
        entry = DlqEntry(
            id=self._ids.new(now),
            run_id=live.id,
            job=live.job_name,
            target=target.value,
            target_idx=target.idx if live.persist_targets else -1,
            error=err,
            failed_at=now,
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
        )

    async def settle(self) -> None:
        """Wait until every end reported so far is durable (and its report made)."""
        self._flush()
        await self._store.commit([])

    # -- reporting ------------------------------------------------------------------------
    def _event_row(self, run: RunView, event_id: str, at: float) -> Write:
        """The ``run.<state>`` event, as its row only (its payload as JSON text, without
        json.dumps: one is written per run, and most are never read back)."""
        state = run.state.value
        text = f'{{"job":{json_name(run.job_name)},"run_id":{json_id(run.id)},"state":"{state}"}}'
        return w_event_row(event_id, f"run.{state}", text, at, None, run.depth + 1)

    def _settled(
        self, lives: list[LiveRun], event_ids: list[str | None], exc: BaseException | None
    ) -> None:
        try:
            self._count(lives)
        except Exception:  # the runs have ended either way
            log.exception("run.metrics_failed", runs=len(lives))
        for live, event_id in zip(lives, event_ids, strict=True):
            try:
                self._report(live, event_id)
            except Exception:  # the run has ended either way
                log.exception("run.report_failed", run_id=live.id, job=live.job_name)

    def _count(self, lives: list[LiveRun]) -> None:
        """The runs' metrics, applied once per job and state."""
        by_job: dict[str, tuple[JobRuntime, dict[str, int], list[float], list[float]]] = {}
        for live in lives:
            job = live.job
            got = by_job.get(job.name)
            if got is None:
                got = by_job[job.name] = (job, {}, [], [])
            _, states, durations, successes = got
            state = live.state.value
            states[state] = states.get(state, 0) + 1
            end = live.finished_at or 0.0
            if live.started_at is not None:
                durations.append(end - live.started_at)
            if state == "succeeded":
                successes.append(end)
        for job, states, durations, successes in by_job.values():
            meters(job, self._metrics).runs_ended(states, durations, max(successes, default=None))
        # ours count as published events
        self._metrics.events_published_total.inc(sum(1 for x in lives if x.state in _OUTCOMES))

    def _report(self, live: LiveRun, event_id: str | None) -> None:
        if self._log_runs:
            start, end = live.started_at, live.finished_at or 0.0
            log.info(
                "run.finished",
                run_id=live.id,
                job=live.job_name,
                state=live.state.value,
                attempts=live.attempts,
                duration_s=round(end - start if start is not None else 0.0, 6),
            )
        if event_id is not None:
            name = f"run.{live.state.value}"
            if self._listening(name):
                payload = {"job": live.job_name, "run_id": live.id, "state": live.state.value}
                self._outbox.put(
                    Event(
                        id=event_id,
                        name=name,
                        payload=payload,
                        created_at=live.finished_at or 0.0,
                        depth=live.depth + 1,
                    )
                )


def meters(job: JobRuntime, metrics: Metrics) -> JobMetrics:
    """The job's metric children, made on first use."""
    if job.meters is None:
        job.meters = JobMetrics(metrics, job.name)
    found: JobMetrics = job.meters
    return found
