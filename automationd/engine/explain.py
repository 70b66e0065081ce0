"""``jobs.explain``: why a job is or is not running right now, from live state, in sentences.

Each reason is ``{code, message}``; the codes are stable (tools match on them), the messages
are for people. They come in the order an operator needs them: what stops the job (paused,
completed), what its runs wait for now (a worker, a service's tokens, a 429 pause, an open
breaker, the previous run), when it fires next, and what happened lately (a fire skipped by
the overlap policy, misfires dropped, the last failure and its dead letter).

Nothing here changes state. It reads the job, its runs in memory, the worker pool, the
service gate, what the scheduler remembers of dropped misfires, and a few stored runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from automationd.clock import Clock
from automationd.config.model import Overlap
from automationd.config.values import zone
from automationd.core.breaker import BreakerState
from automationd.core.runstate import RunState
from automationd.engine.jobs import JobRuntime
from automationd.engine.pool import WorkerPool
from automationd.engine.scheduler import Scheduler
from automationd.records import Run
from automationd.store.api import RunQuery, Store
from automationd.units import format_duration, rfc3339

Reason = dict[str, str]
_FAILED = ("failed", "partial")
_ENDED = ("succeeded", "failed", "partial", "skipped", "cancelled")


def _r(code: str, message: str) -> Reason:
    return {"code": code, "message": message}


class Explainer:
    def __init__(
        self, *, pool: WorkerPool, scheduler: Scheduler, store: Store, clock: Clock
    ) -> None:
        self._pool = pool
        self._scheduler = scheduler
        self._store = store
        self._clock = clock

    async def explain(self, job: JobRuntime) -> dict[str, Any]:
        now = self._clock.time()
        recent = await self._store.runs(RunQuery(job=job.name, limit=20))
        reasons = [*self._stopped(job), *self._waiting(job, now), *self._next(job, now)]
        reasons += self._history(job, recent)
        reasons += await self._failure(job, recent)
        return {
            "name": job.name,
            "state": job.state,
            "next_fire": rfc3339(job.next_run) if job.enabled else None,
            "running": len(job.live) if job.live else 0,
            "reasons": reasons,
        }

    # -- what stops it ----------------------------------------------------------------
    def _stopped(self, job: JobRuntime) -> list[Reason]:
        out: list[Reason] = []
        if job.completed:
            spec = job.spec
            if spec.max_runs and job.run_count >= spec.max_runs:
                why = f"it reached max_runs = {spec.max_runs} ({job.run_count} runs)"
            else:
                why = "its schedule has no fire left"
            out.append(_r("completed", f"The job is completed: {why}. It fires no more."))
        if job.paused:
            out.append(
                _r(
                    "paused",
                    "The job is paused: it does not fire until `automationctl jobs resume "
                    f"{job.name}`. Pauses survive restarts and reloads.",
                )
            )
        return out

    # -- what its runs wait for now -----------------------------------------------------
    def _waiting(self, job: JobRuntime, now: float) -> list[Reason]:
        out: list[Reason] = []
        gate = job.gate
        limits = gate.limits() if gate is not None else None
        breaker = gate.breaker if gate is not None else None
        if gate is not None and breaker is not None and breaker.state is BreakerState.OPEN:
            probe = breaker.reopens_in(self._clock.monotonic())
            out.append(
                _r(
                    "breaker_open",
                    f"Service {gate.name!r} has its circuit breaker open since "
                    f"{rfc3339(breaker.opened_at)} after {breaker.failures} failures in a "
                    f"row: attempts are refused at once; a probe may go in "
                    f"{format_duration(round(probe, 3))}.",
                )
            )
        if limits is not None and limits.get("paused_until"):
            out.append(
                _r(
                    "service_paused",
                    f"Service {limits['service']!r} is paused until {limits['paused_until']} "
                    "(it answered 429 Too Many Requests or said no requests are left): "
                    "attempts wait for the pause to end.",
                )
            )
        for lv in sorted((job.live or {}).values(), key=lambda x: x.id):
            reason = self._run_waits(job, lv, limits, now)
            if reason is not None:
                out.append(reason)
        return out

    def _run_waits(
        self, job: JobRuntime, lv: Any, limits: dict[str, Any] | None, now: float
    ) -> Reason | None:
        if lv.executing:
            since = rfc3339(lv.started_at)
            return _r("running", f"Run {lv.id} is running (started {since}).")
        if lv.state is RunState.RETRYING:
            return _r("retrying", f"Run {lv.id} is waiting out its retry backoff.")
        waiting_on = [f for f in lv.after if not f.done()]
        if waiting_on:
            return _r(
                "waiting_previous",
                f"Run {lv.id} is queued behind the job's unfinished run (overlap = queue).",
            )
        if limits is not None:
            tokens, rate = limits.get("tokens"), limits.get("rate")
            if tokens is not None and tokens < 1 and job.gate is not None:
                per_s = job.gate.config.rate.per_second if job.gate.config.rate else 0.0
                wait = (1 - tokens) / per_s if per_s > 0 else 0.0
                return _r(
                    "waiting_tokens",
                    f"Run {lv.id} waits for a token of service {limits['service']!r} "
                    f"(rate {rate}, {tokens:g} left): the next one comes at about "
                    f"{rfc3339(now + wait)}.",
                )
            cap = limits.get("concurrency")
            if cap is not None and limits.get("in_flight", 0) >= cap:
                return _r(
                    "waiting_service_slot",
                    f"Run {lv.id} waits for one of the {cap} slots of service "
                    f"{limits['service']!r} (all in use).",
                )
        pool = self._pool
        if pool.busy >= pool.max:
            return _r(
                "waiting_worker",
                f"Run {lv.id} waits for a worker: all {pool.max} are busy "
                f"({pool.waiting} attempts waiting; [workers] max_concurrency).",
            )
        return _r("queued", f"Run {lv.id} is queued and about to start.")

    # -- when it fires next --------------------------------------------------------------
    def _next(self, job: JobRuntime, now: float) -> list[Reason]:
        if not job.enabled:
            return []
        spec = job.spec
        out: list[Reason] = []
        if job.next_run is not None and job.schedule is not None:
            local = dt.datetime.fromtimestamp(job.next_run, zone(spec.timezone))
            note = job.schedule.dst_note(job.next_run)
            dst = {
                "dst-gap": " (moved by a daylight-saving gap)",
                "dst-fold": " (in the hour that daylight saving repeats)",
            }.get(note or "", "")
            out.append(
                _r(
                    "scheduled",
                    f"Next fire at {local:%Y-%m-%d %H:%M:%S %Z} ({spec.timezone}{dst}; "
                    f"{rfc3339(job.next_run)}), schedule {spec.schedule!r}.",
                )
            )
            if job.live and spec.overlap is Overlap.SKIP:
                first = min(job.live)
                out.append(
                    _r(
                        "overlap_skip",
                        f"Run {first} is unfinished: with overlap = skip the next fire is "
                        "skipped unless it ends first.",
                    )
                )
        elif job.schedule is not None:
            out.append(_r("no_fire", "The schedule has no fire left."))
        if spec.on is not None:
            when = f" with payload fields {dict(spec.when)}" if spec.when else ""
            out.append(
                _r("event", f"It runs when an event matching {spec.on!r} is published{when}.")
            )
        return out

    # -- what happened lately ------------------------------------------------------------
    def _history(self, job: JobRuntime, recent: list[Run]) -> list[Reason]:
        out: list[Reason] = []
        for run in recent:
            if run.state.value == "skipped" and (run.reason or "").startswith("overlap"):
                out.append(
                    _r(
                        "overlap_skip",
                        f"The fire due {rfc3339(run.scheduled_for)} was skipped (run {run.id}): "
                        f"{run.reason}; overlap = {job.spec.overlap.value}.",
                    )
                )
                break
        dropped = self._scheduler.dropped.get(job.name)
        if dropped is not None:
            count, at, policy = dropped
            out.append(
                _r(
                    "misfire_dropped",
                    f"{count} fire(s) missed while the daemon was down or behind were dropped "
                    f"at {rfc3339(at)}: misfire = {policy} (misfire_grace "
                    f"{format_duration(job.spec.misfire_grace)}).",
                )
            )
        return out

    async def _failure(self, job: JobRuntime, recent: list[Run]) -> list[Reason]:
        last = next((r for r in recent if r.state.value in _ENDED), None)
        if last is None or last.state.value not in _FAILED:
            return []
        err = f": {last.error.kind.value}: {last.error.message}" if last.error else ""
        at = rfc3339(last.finished_at)
        text = f"The last run {last.id} ended {last.state.value} at {at}{err}."
        letters = await self._store.dlq(job=job.name, limit=1)
        if letters and letters[0].run_id == last.id:
            text += f" Dead letter {letters[0].id} holds it (automationctl dlq retry)."
        return [_r("last_failed", text)]
