"""The live-run map, and the one way to start runs: ``prepare`` → ``launch``.

Rules:
- ``prepare`` makes a queued run in memory (counted on its job, tracked as live at once, so
  a scheduled fire in the same loop turn sees it when it applies its overlap policy).
- ``launch`` submits the creation rows of a group of runs (and any extra rows, e.g. the event
  that started them) as ONE unit. Nothing runs before that unit is durable; its settlement
  spawns each run's task and then tells the caller (``then``). A unit the store refuses is
  forgotten and the caller hears why: nothing was stored, nothing runs.
- When nothing stands between the run and its first action (no service gate, no run to wait
  for, one target or a check), the launcher opens that first attempt itself and the run's
  task is created only once the attempt is durable, so the task calls the action on its
  first step (engine/attempt.py rules):
  - a worker slot free at once: the attempt is opened in the creation unit itself (the run
    is born ``running`` with attempt 1 started);
  - otherwise (one daemon), once the creation is durable, the run waits for a slot as a
    pool *reservation* (engine/pool.py), with no task: when a slot comes, its attempt is
    opened and submitted (``retry``: a failed batch is tried again, holding the slot), and
    its settlement creates the task.
  Why: a run that waited for a worker as a task cost three task steps, a future and an
  awaited commit; this is one task step (a third less loop CPU per run: README Performance).
- ``resume`` restarts a run found unfinished at start-up (or claimed), under the same id,
  unless this daemon runs it already (``holds``); one in memory that will not run here
  (abandoned and unwinding, or born unowned) is replaced, and leaving removes only itself.
- Every run task is created in the daemon's TaskGroup, with a context of its own.
- Several daemons (fleet/leases.py): a run that starts at once is held by this daemon from
  birth, under its token; one that would only wait is born unowned and leaves memory once
  durable, for whichever daemon has room to claim it. A run's lease is released once the
  writes it left behind are durable. A run another daemon took over is ``abandon``ed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.engine.attempt import AttemptTools, open_attempt, prime
from automationd.engine.herd import open_together, together
from automationd.engine.jobs import JobRuntime, w_job_of
from automationd.engine.live import LiveRun, LiveTarget
from automationd.engine.report import Report
from automationd.engine.run import RunParts, life
from automationd.errors import StoreError
from automationd.fleet.leases import Leases
from automationd.records import Phase, Run, Trigger
from automationd.store.api import Then, Write
from automationd.store.rows import w_run, w_target

NOT_STORED_EVERY = 60.0  # seconds between log lines about runs the store refused
AHEAD = "made ahead of its fire time"  # the reason a run made ahead carries until its fire

log = structlog.get_logger("automationd.engine")


class Launcher:
    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        attempts: AttemptTools,
        report: Report,
        leases: Leases | None = None,
    ) -> None:
        self._clock = clock
        self._leases = leases if leases is not None else Leases("local")
        self._fleet = self._leases.shares_work
        self._ids = ids
        self._attempts = attempts
        self._store = attempts.store
        self._pool = attempts.pool
        self._draining = attempts.draining
        self._parts = RunParts(attempts, report, self._leave, log.is_enabled_for(logging.DEBUG))
        self.live: dict[str, LiveRun] = {}
        self.freed = asyncio.Event()  # a run left memory (a fleet claims again: room)
        self._tg: asyncio.TaskGroup | None = None
        self._unstored, self._unstored_told = 0, -NOT_STORED_EVERY  # refused runs not yet told

    @property
    def clock(self) -> Clock:
        return self._clock

    def attach(self, tg: asyncio.TaskGroup) -> None:
        """Run tasks belong to ``tg`` (the daemon's top TaskGroup)."""
        self._tg = tg

    # -- starting -------------------------------------------------------------------------
    def prepare(
        self,
        job: JobRuntime,
        *,
        trigger: Trigger,
        payload: Any = None,
        idempotency_key: str | None = None,
        scheduled_for: float | None = None,
        targets: Sequence[Any] | None = None,
        skip_check: bool = False,
        undecided: bool = False,
        depth: int = 0,
        origin: str | None = None,
        after: tuple[asyncio.Future[None], ...] = (),
        ahead: bool = False,
    ) -> LiveRun:
        """A queued run in memory, counted and tracked; nothing is submitted yet.

        ``undecided``: an apply run, whose targets its decision sets (engine/plan.py).
        ``ahead``: a run made before its fire is due (engine/ahead.py): neither counted nor
        tracked until ``track`` at its fire, and marked so until then."""
        now = self._clock.time()
        live = LiveRun(
            id=self._ids.new(now),
            job=job,
            trigger=trigger,
            created_at=now,
            scheduled_for=scheduled_for,
            idempotency_key=idempotency_key,
            depth=depth,
            origin=origin,
            payload=payload,
            after=after,
        )
        explicit = targets if targets is not None else job.spec.targets
        if undecided:
            pass
        elif job.spec.check is not None and not skip_check:
            live.needs_check = True  # the check decides the targets
        elif explicit is None:
            live.targets = [LiveTarget(0, None)]  # the implicit one (engine/live.py)
        else:
            live.targets = [LiveTarget(i, v) for i, v in enumerate(explicit)]
            live.persist_targets = True
        if ahead:
            live.reason = AHEAD
            live.made = True
            live.direct = self._direct(live)
            if live.direct is not None:
                prime(self._attempts, live, *live.direct)
            return live
        live.direct = self._direct(live)
        job.count_run(live.id, counted=trigger is not Trigger.PREVIEW)  # (max_runs: real runs)
        self.live[live.id] = live
        job.active[live.id] = live
        return live

    def track(self, live: LiveRun, after: tuple[asyncio.Future[None], ...] = ()) -> LiveRun:
        """A run made ahead of its fire, at its fire: from now on as if ``prepare`` made it
        (its next rows carry no mark: from then on it is an ordinary queued run)."""
        live.reason = None
        live.after = after
        live.direct = self._direct(live)
        live.job.count_run(live.id)
        self.live[live.id] = live
        live.job.active[live.id] = live
        return live

    def launch(
        self,
        lives: Sequence[LiveRun],
        extra: Sequence[Write] = (),
        then: Then | None = None,
        *,
        herd: bool = False,
    ) -> None:
        """Make ``lives`` (and ``extra``) durable as one unit; then start them and tell
        ``then``. Raises ``StoreError`` at once when the store is closing. ``herd``: part of
        many fires due at once; ends of runs wait until these have called their actions
        (engine/run.py ``Starts``)."""
        writes = list(extra)
        rest = lives
        if herd and not self._fleet:  # runs made ahead start together (engine/herd.py)
            firsts, rest = together(lives, self._first_step, self._pool.try_acquire)
            writes += open_together(self._attempts, firsts, 0)
        for live in rest:
            writes += self._creation(live)
        if herd:
            for live in lives:
                if live.first is not None:
                    self._parts.starts.add(live)
        try:
            self._store.submit_then(writes, partial(self._stored, lives, then))
        except Exception:
            for live in lives:
                self._unopen(live)
                self._leave(live)
            raise

    async def start(self, lives: Sequence[LiveRun], extra: Sequence[Write] = ()) -> list[Run]:
        """``launch``, for callers that wait until the runs are durable: returns them as
        created (taken at the settlement, before any of their tasks has stepped)."""
        fut: asyncio.Future[list[Run]] = asyncio.get_running_loop().create_future()
        self.launch(lives, extra, partial(_resolve, fut, lives))
        return await fut

    def _creation(self, live: LiveRun) -> list[Write]:
        """The rows that create ``live``; with its first attempt when it can start at once."""
        first = self._first_step(live)
        opened = first is not None and self._pool.try_acquire()
        if self._fleet:
            live.unowned = not opened and not live.after and live.cancel_reason is None
            if not live.unowned:
                live.lease = self._leases.token
                self._leases.hold(live.id, live.lease)
        if opened:
            assert first is not None
            live.first, writes = open_attempt(self._attempts, live, *first)
        else:
            writes = [w_run(live)]
        if live.persist_targets:
            writes.extend(w_target(x.snapshot(live.id)) for x in live.targets)
        writes.append(w_job_of(live.job))  # its run count (max_runs decides completion on it)
        return writes

    @staticmethod
    def _direct(live: LiveRun) -> tuple[Phase, LiveTarget | None] | None:
        """The first attempt the launcher may open itself, decided once at ``prepare``."""
        if live.after or live.job.gate is not None:
            return None
        if live.trigger is Trigger.APPLY:
            return None  # its decision comes first, and may end it before any attempt
        if live.needs_check:
            return Phase.CHECK, None
        if live.trigger is Trigger.PREVIEW:
            return None  # a preview never performs
        if len(live.targets) == 1:
            return Phase.PERFORM, live.targets[0]
        return None

    def _first_step(self, live: LiveRun) -> tuple[Phase, LiveTarget | None] | None:
        """``_direct``, unless the run was cancelled, the daemon drains or (after a reload)
        the job got a service gate meanwhile."""
        if live.cancel_reason is not None or live.job.gate is not None or live.abandoned:
            return None
        if self._draining.is_set():
            return None
        direct: tuple[Phase, LiveTarget | None] | None = live.direct
        return direct

    def _stored(
        self, lives: Sequence[LiveRun], then: Then | None, exc: BaseException | None
    ) -> None:
        if exc is not None:
            for live in lives:
                self._unopen(live)
                self._leave(live)  # never stored: the caller is told; nothing to run
            if isinstance(exc, StoreError) and exc.kind == "duplicate":
                for live in lives:  # another leader made this fire: expected, per run
                    log.info("run.duplicate", run_id=live.id, job=live.job_name, error=str(exc))
            else:
                self._not_stored(lives, exc)
        else:
            for live in lives:
                if live.unowned or (live.first is None and self._draining.is_set()):
                    self._leave(live)  # durable and queued: claimed, or resumed at next start
                elif live.first is None and self._first_step(live) is not None:
                    prio = live.job.spec.priority
                    live.reservation = self._pool.reserve(prio, partial(self._granted, live))
                else:
                    self.spawn(live)
        if then is not None:
            then(exc)

    def _granted(self, live: LiveRun, granted: bool) -> None:
        """A worker slot for a queued run (or the pool closed): open its first attempt; its
        task starts once that is durable. Called from the pool, inside a ``release()``."""
        live.reservation = None
        if not granted:
            self._leave(live)  # durable and queued: it resumes at next start
            return
        first = self._first_step(live)
        if first is None:  # cancelled or draining meanwhile: the general path decides
            self._pool.release()
            if self._draining.is_set() and live.cancel_reason is None:
                self._leave(live)
            else:
                self.spawn(live)
            return
        try:
            live.first, writes = open_attempt(self._attempts, live, *first)
            self._store.submit_then(writes, partial(self._opened, live), retry=True)
        except Exception as exc:  # the store is closing: the run stays queued on disk
            self._unopen(live)
            self._leave(live)
            log.warning("run.not_started", run_id=live.id, job=live.job_name, error=str(exc))

    def _opened(self, live: LiveRun, exc: BaseException | None) -> None:
        if exc is None:
            self.spawn(live)
        else:  # abandoned at close: the attempt may not be stored; recovery decides
            self._unopen(live)
            self._leave(live)

    def _not_stored(self, lives: Sequence[LiveRun], exc: BaseException) -> None:
        """Runs the store refused (disk full): their callers hear it; the log says so at
        most once a minute with a count (a full disk refused thousands a second)."""
        self._unstored += len(lives)
        now, live = self._clock.monotonic(), lives[0]
        if now - self._unstored_told >= NOT_STORED_EVERY:
            note = f"said at most once per {NOT_STORED_EVERY:g}s while the store refuses"
            job, n = live.job_name, self._unstored
            log.error("run.not_stored", runs=n, run_id=live.id, job=job, error=str(exc), note=note)
            self._unstored, self._unstored_told = 0, now

    def _unopen(self, live: LiveRun) -> None:
        if live.first is not None:
            live.first = None
            self._pool.release()

    def holds(self, run_id: str) -> bool:
        """In memory and run here (not abandoned, nor born for others): not to resume again."""
        live = self.live.get(run_id)
        return live is not None and not live.abandoned and not live.unowned

    def resume(self, live: LiveRun) -> bool:
        """A run found unfinished at start-up (or claimed) goes on under its own id; False,
        and nothing done, if this daemon already runs it (``holds``)."""
        if self.holds(live.id):
            log.warning("run.already_live", run_id=live.id, job=live.job_name)
            return False
        self.live[live.id] = live
        live.job.active[live.id] = live
        self.spawn(live)
        return True

    def spawn(self, live: LiveRun) -> None:
        assert self._tg is not None, "launcher not attached to a TaskGroup"
        live.task = self._tg.create_task(
            life(self._parts, live), name=f"run:{live.id}", context=contextvars.Context()
        )

    # -- control --------------------------------------------------------------------------
    def cancel(self, run_id: str, reason: str = "cancelled by request") -> LiveRun | None:
        """Ask a live run to end ``cancelled`` (one whose task has not started ends so when
        it starts: cancelling a task before its first step would skip its body)."""
        live = self.live.get(run_id)
        if live is None:
            return None
        live.cancel_reason = reason
        self._stop(live)  # it ends cancelled on its first step
        return live

    def abandon(self, run_id: str) -> bool:
        """Another daemon holds the run now: stop its task without writing anything."""
        live = self.live.get(run_id)
        if live is None:
            return False
        live.abandoned = True
        self._stop(live)  # it leaves memory on its first step, without a write
        return True

    def _stop(self, live: LiveRun) -> None:
        """Cancel the run's task; a run still waiting for a worker gives its place in the
        pool's line to the next waiter and gets a task, to end on its first step."""
        if live.task is not None and live.started:
            live.task.cancel()
        elif live.reservation is not None and self._pool.withdraw(live.reservation):
            live.reservation = None
            self.spawn(live)

    def _leave(self, live: LiveRun) -> None:
        if live.herd:  # it leaves without a step of its own
            self._parts.starts.done(live)
        successor = self.live.get(live.id, live) is not live  # resumed or claimed again: stays
        if not successor:
            self.live.pop(live.id, None)
        if live.job.active.get(live.id) is live:
            del live.job.active[live.id]
        live.leave()
        if self._fleet:
            self.freed.set()
        if self._fleet and not live.unowned and not live.abandoned and not successor:
            # the lease goes once every write the run left is durable (submission order)
            run_id, leases = live.id, self._leases
            try:
                self._store.submit_then((), lambda _exc: leases.release(run_id), retry=True)
            except StoreError:
                leases.release(run_id)  # the store is closed: nothing more can be written

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks of the runs in memory (what a shutdown drains)."""
        return [lv.task for lv in self.live.values() if lv.task is not None]


def _resolve(
    fut: asyncio.Future[list[Run]], lives: Sequence[LiveRun], exc: BaseException | None
) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result([live.snapshot() for live in lives])
    else:
        fut.set_exception(exc)
