"""The scheduler: drives the timer wheel from the clock and turns due fires into runs.

Theory of operation:
- Every enabled job with a schedule sits on the wheel once, at its next due time plus its
  jitter (drawn from the injected RNG). ``scheduled_for`` stays the nominal due time.
- The driver sleeps until the wheel's next deadline or until ``wake()`` (the job set changed);
  it never ticks on a fixed period. Sleeps are capped at ``MAX_SLEEP`` so a wall-clock step
  while asleep is noticed within that bound.
- At each wake it compares wall minus monotonic time with the previous wake; a change beyond
  ``JUMP_TOLERANCE`` is a clock jump: every job's due time is recomputed from its last
  scheduled fire (forward jumps become misfires, backward jumps never re-fire a time).
- Each popped fire passes the overlap policy (skip / queue / allow / cancel_previous), then the
  next due time is computed from the *scheduled* time (``@every`` does not drift by run time).
- Lateness (fire time minus due time) is observed when the wheel hands the fire out.
- The plain fires of one step are launched in units of ``CHUNK``: with the writer's rule 2
  (store/writer.py), the first units of a herd are durable, and their runs started, while
  the rest are still being made.
- A stall (SIGSTOP, a VM pause, a long GC: wall and monotonic time both moved on, so it is no
  clock jump) is noticed too: before sleeping the driver notes when it means to wake, and a
  step that starts more than ``STALL_TOLERANCE`` after that woke far behind. In such a step a
  fire later than its job's ``misfire_grace`` is not run as a plain late fire: the job is
  placed again with catch-up, so its misfire policy applies to every fire it slept through,
  exactly as after a restart (and ``fires_missed_total`` counts them). The fires inside the
  grace window that this puts back on the wheel come due in the very next step, which did
  not stall, so they run as ordinary (late) fires, as they would after a restart.
- At start, fires missed while the daemon was down follow the misfire policy, computed from
  each job's persisted last scheduled fire. A job that never fired has none, so the scheduler
  keeps a *mark*: the last time it had handled everything due (``baseline``), in memory at
  every step and persisted in a reserved jobs-table row (``MARK``) at most once per
  ``MARK_EVERY``. Never-fired jobs count their misfires from it, so an ``@at`` whose time
  passed while the daemon was down still follows its misfire policy. Fires dropped by the
  policy advance the job's last scheduled fire, so they are counted once, not at every start.
- Several daemons: only the leader fires (engine/crew.py says who). A follower keeps no
  wheel; on becoming leader it reads every job's last scheduled fire and the mark from the
  store (the old leader wrote them with its fires) and places the jobs with catch-up, so the
  misfire policy covers what nobody fired in between. A fire that a second leader made in
  the same split second is refused by the store (one run per job and due time).
"""

from __future__ import annotations

import asyncio
import math
import random

import structlog

from automationd.clock import Clock
from automationd.core.policy import OverlapDecision, decide_overlap, plan_misfire
from automationd.core.runstate import RunState
from automationd.core.wheel import TimerWheel
from automationd.engine.ahead import HERD_MIN, Ahead
from automationd.engine.jobs import JobRuntime, JobTable, job_row
from automationd.engine.launcher import Launcher
from automationd.engine.live import LiveRun
from automationd.engine.report import Report
from automationd.errors import StoreError
from automationd.obs.metrics import Metrics
from automationd.records import Trigger
from automationd.store.api import Store
from automationd.store.jobs import JobRow, StoredJobs, w_job, w_job_state

log = structlog.get_logger("automationd.scheduler")

MAX_SLEEP = 30.0
# Wake this much before a deadline and sleep the rest: a long idle wait overshoots by up to
# 10 ms on a virtual machine (the vCPU wakes slowly), a 5 ms one from a busy CPU by < 1 ms.
# Measured on the 2-vCPU development VM, uvloop and asyncio alike: wake - due p99 11 → 4 ms.
WAKE_EARLY = 0.005
JUMP_TOLERANCE = 1.0
STALL_TOLERANCE = 1.0  # waking later than meant by more than this is a stall
MARK = "~scheduler"  # reserved jobs-table row; "~" can never start a job name
MARK_EVERY = 1.0  # seconds between persisted marks
CHUNK = 128  # plain fires of one step per durable unit (see the top)


class Scheduler:
    def __init__(
        self,
        *,
        launcher: Launcher,
        report: Report,
        store: Store,
        jobs: JobTable,
        clock: Clock,
        rng: random.Random,
        metrics: Metrics,
        unit_per_fire: bool = False,
    ) -> None:
        self.launcher = launcher
        self.report = report
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.rng = rng
        self.metrics = metrics
        self.wheel: TimerWheel[JobRuntime] = TimerWheel(clock.time())
        self._wake = asyncio.Event()
        self._offset = clock.time() - clock.monotonic()
        self.stopped = False
        self.baseline: float | None = None  # everything due up to here was handled
        self._marked = -math.inf
        self._wake_at: float | None = None  # monotonic time the driver meant to wake
        self.leading = True  # a follower in a fleet fires nothing (engine/crew.py)
        # A fleet's store may refuse one fire (a second leader made it): each fire is then
        # its own unit, so the refusal takes no other fire with it.
        self.unit_per_fire = unit_per_fire
        # a herd's runs are made ahead of its instant (engine/ahead.py); not in a fleet
        self.ahead = None if unit_per_fire else Ahead(launcher, store)
        # job → (fires dropped, when, misfire policy) at its last misfire, for jobs.explain
        self.dropped: dict[str, tuple[int, float, str]] = {}

    # ------------------------------------------------------------ job set changes
    def load(self, *, catch_up: bool) -> None:
        """Place every enabled job on the wheel; with ``catch_up`` apply misfire policies."""
        now = self.clock.time()
        for job in self.jobs:
            self.place(job, now, catch_up=catch_up)
        self._mark(now)
        self.wake()

    def _mark(self, now: float) -> None:
        """Remember (and persist, at most once per MARK_EVERY) that fires due by ``now`` were
        handled; never-fired jobs count misfires from here after a restart or clock jump."""
        if not self.leading:
            return
        if self.baseline is None or now > self.baseline:
            self.baseline = now
        if now - self._marked >= MARK_EVERY:
            self._marked = now
            row = JobRow(name=MARK, source="scheduler", last_scheduled=self.baseline)
            self.store.post([w_job(row)])

    def place(self, job: JobRuntime, now: float, *, catch_up: bool = False) -> None:
        """(Re)compute a job's next due time and put it on the wheel."""
        self.unplace(job)
        sched = job.schedule
        if sched is None or not job.enabled:
            return
        catch_up = catch_up and self.leading  # only a leader fires, catch-ups included
        spec = job.spec
        last = job.last_scheduled
        if last is None and catch_up:
            last = self.baseline  # never fired: count from when the scheduler was last alive
        first = sched.next_after(last) if last is not None else None
        if last is not None and (last >= now or first is None or first > now):
            nxt = first  # nothing came due since (or the clock went back: never re-fire)
        elif last is not None and catch_up:
            plan = plan_misfire(sched, last, now, spec.misfire, spec.misfire_grace)
            if plan.missed:
                self.dropped[job.name] = (plan.missed, now, spec.misfire.value)
                self.metrics.fires_missed_total.labels(self.metrics.job(job.name)).inc(plan.missed)
                log.warning(
                    "schedule.misfired", job=job.name, missed=plan.missed, policy=spec.misfire.value
                )
            if plan.missed or plan.fire:
                self._advance_past_missed(job, last, now)
            for due in plan.fire:
                self._fire(job, due, Trigger.MISFIRE, now)
                if not job.enabled:
                    return
            # fires inside the grace window run normally (late), oldest first
            nxt = plan.late[0] if plan.late else plan.next_due
        else:
            nxt = sched.next_after(now)
        self._put(job, nxt)

    def _advance_past_missed(self, job: JobRuntime, last: float, now: float) -> None:
        """Every fire before ``now - grace`` is handled (run or dropped): move the job's last
        scheduled fire there and persist it, so the same misses are not counted again."""
        sched = job.schedule
        assert sched is not None
        cutoff = math.nextafter(now - job.spec.misfire_grace, -math.inf)
        if sched.interval is not None:  # stay on the @every grid
            cutoff = last + math.floor((cutoff - last) / sched.interval) * sched.interval
        job.note_fire(cutoff)
        self.store.post([w_job(job_row(job))])

    def _put(self, job: JobRuntime, due: float | None) -> None:
        if due is None:
            job.next_run = None
            if (
                self.leading
                and job.schedule is not None
                and job.schedule.kind == "at"
                and job.spec.on is None
            ):
                self._complete(job)
            return
        jitter = job.spec.jitter
        deadline = due + self.rng.uniform(0.0, jitter) if jitter > 0 else due
        job.next_run = due
        job.wheel_handle = self.wheel.add(deadline, job)
        job.wheel_due = due

    def unplace(self, job: JobRuntime) -> None:
        if self.ahead is not None:
            self.ahead.release(job, "the job changed before its fire")
        if job.wheel_handle is not None:
            self.wheel.cancel(job.wheel_handle)
            job.wheel_handle = None
        job.next_run = None

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------ the loop
    def lead(self, rows: StoredJobs) -> None:
        """Become the leader: adopt the last fires the store knows, then place every job
        with catch-up (the misfire policy covers the time nobody led)."""
        mark = rows.get(MARK)
        if mark is not None and mark.last_scheduled is not None:
            self.baseline = max(self.baseline or mark.last_scheduled, mark.last_scheduled)
        for job in self.jobs:
            row = rows.get(job.name)
            if row is None:
                continue
            if row.last_scheduled is not None:
                job.note_fire(row.last_scheduled)
            job.run_count = max(job.run_count, row.run_count)
            job.paused, job.completed = row.paused, row.completed
        self.leading = True
        self._marked = -math.inf
        self.load(catch_up=True)

    def follow(self) -> None:
        """Stop firing: another daemon leads (or we cannot tell that we still do). Jobs stay
        placed, so a follower still shows each job's next fire."""
        self.leading = False
        self.wake()

    async def run(self) -> None:
        while not self.stopped:
            if not self.leading:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._step()
            self._wake.clear()
            nd = self.wheel.next_deadline()
            if self.ahead is not None:
                self.ahead.look(self.wheel, self.clock.time())
                nd = self.ahead.wake_at(self.wheel.next_deadline())
            delay = MAX_SLEEP if nd is None else min(MAX_SLEEP, nd - self.clock.time())
            self._wake_at = self.clock.monotonic() + max(0.0, delay)
            if delay > WAKE_EARLY:  # then sleep the rest from a CPU that is awake
                delay -= WAKE_EARLY
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def step(self) -> int:
        """Fire everything due now; returns the number of fires handed out."""
        due, now, stalled = self._due()
        for i in range(0, len(due), CHUNK):
            self._hand_out(due[i : i + CHUNK], now, stalled, herd=len(due) >= HERD_MIN)
        self._mark(now)  # after the fires: its write must not compete with the hand-out
        return len(due)

    async def _step(self) -> None:
        """``step``, with a loop turn between units of ``CHUNK`` fires: the first units of a
        herd are durable and their actions running while the rest is handed out."""
        due, now, stalled = self._due()
        for i in range(0, len(due), CHUNK):
            if i:
                await asyncio.sleep(0)
            self._hand_out(due[i : i + CHUNK], now, stalled, herd=len(due) >= HERD_MIN)
        self._mark(now)

    def _due(self) -> tuple[list[tuple[JobRuntime, float]], float, bool]:
        """What is due now: (job, its wheel deadline) taken off the wheel, earliest first."""
        if not self.leading:
            return [], 0.0, False
        now = self.clock.time()
        mono = self.clock.monotonic()
        behind = 0.0 if self._wake_at is None else mono - self._wake_at
        self._wake_at = None
        stalled = behind > STALL_TOLERANCE
        if stalled:
            log.warning("schedule.stalled", behind_s=round(behind, 3))
        offset = now - mono
        if abs(offset - self._offset) > JUMP_TOLERANCE:
            log.warning("clock.jumped", by_s=round(offset - self._offset, 3))
            self._offset = offset
            self._recompute(now)
        self._offset = offset
        jobs = self.wheel.pop_due(now)
        if self.ahead is not None:
            jobs = self.ahead.take_due(now) + jobs
        due: list[tuple[JobRuntime, float]] = []
        for job in jobs:
            handle, job.wheel_handle = job.wheel_handle, None
            nominal = job.wheel_due if job.wheel_due is not None else now
            # lateness against the jittered deadline (the jitter is intended, not late)
            due.append((job, handle.deadline if handle is not None else nominal))
        return due, now, stalled

    def _hand_out(
        self, due: list[tuple[JobRuntime, float]], now: float, stalled: bool, *, herd: bool
    ) -> None:
        """Fire ``due``; plain fires are launched as one durable unit. A job that changed
        since it was taken off the wheel (a loop turn of ``_step`` passed) is left alone:
        paused or removed, it does not fire; placed again, the wheel has it."""
        observe = self.metrics.schedule_lateness_seconds.observe
        batch: list[LiveRun] = []
        for job, deadline in due:
            if (
                job.wheel_handle is not None
                or not job.enabled
                or self.jobs.get(job.name) is not job
            ):
                continue
            nominal = job.wheel_due if job.wheel_due is not None else now
            late = max(0.0, now - deadline)
            if stalled and late > job.spec.misfire_grace:
                self.place(job, now, catch_up=True)  # woke far behind: a misfire (see top)
                continue
            observe(late)
            self._fire(job, nominal, Trigger.SCHEDULE, now, batch)
            if job.enabled and job.schedule is not None:
                self._put(job, job.schedule.next_after(nominal))
        if batch and self.unit_per_fire:
            for live in batch:
                self._launch([live])
        elif batch:
            self._launch(batch, herd=herd)

    def _recompute(self, now: float) -> None:
        for _deadline, job in self.wheel.drain():
            job.wheel_handle = None
        self.wheel.rebase(now)  # after a backward jump, re-spread entries over the slots
        for job in self.jobs:
            self.place(job, now, catch_up=True)

    # ------------------------------------------------------------ one fire
    def _fire(
        self,
        job: JobRuntime,
        due: float,
        trigger: Trigger,
        now: float,
        batch: list[LiveRun] | None = None,
    ) -> None:
        """Apply the overlap policy to one fire; a plain fire joins ``batch`` if given."""
        job.note_fire(due)
        if trigger is Trigger.MISFIRE:
            decision = OverlapDecision.FIRE
        else:
            queued = sum(
                1 for lv in job.active.values() if lv.state is RunState.QUEUED and lv.after
            )
            decision = decide_overlap(job.spec.overlap, len(job.active), queued)
        made = self.ahead.take(job, due) if self.ahead is not None else None
        if decision is OverlapDecision.SKIP:
            busy = min(job.active) if job.active else "?"
            self.report.skipped(
                job,
                trigger=trigger,
                scheduled_for=due,
                reason=f"overlap: run {busy} unfinished",
                made=made,
            )
        else:
            after: tuple[asyncio.Future[None], ...] = ()
            if decision in (OverlapDecision.QUEUE, OverlapDecision.CANCEL_PREVIOUS):
                prev = list(job.active.values())
                if decision is OverlapDecision.CANCEL_PREVIOUS:
                    for lv in prev:
                        self.launcher.cancel(lv.id, "cancelled by a newer fire (cancel_previous)")
                after = tuple(lv.ended() for lv in prev)
            if made is not None:
                live = self.launcher.track(made, after)
            else:
                live = self.launcher.prepare(job, trigger=trigger, scheduled_for=due, after=after)
            if batch is not None and not after:
                batch.append(live)
            else:
                self._launch([live])
        if job.spec.max_runs and job.run_count >= job.spec.max_runs:
            self._complete(job)

    def _launch(self, lives: list[LiveRun], *, herd: bool = False) -> None:
        try:
            self.launcher.launch(lives, herd=herd)
        except StoreError as exc:  # closing: the fires are lost with the runs never stored
            log.error("schedule.fire_not_stored", runs=len(lives), error=str(exc))

    def _complete(self, job: JobRuntime) -> None:
        if not job.completed:
            gauge = self.metrics.jobs
            gauge.labels(job.state).dec()
            gauge.labels("completed").inc()
        job.completed = True
        self.unplace(job)
        self.store.post([w_job_state(job_row(job))])
        log.info("job.completed", job=job.name, run_count=job.run_count)
