"""The scheduler driver with an injected FakeClock and a recording fake launcher: fires, @every
anchoring, jitter, wall-clock jumps, misfire catch-up from the persisted mark, overlap and
max_runs; plus the next-fire previews (``jobs show``, ``check-config``) at a fixed ``now``."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from automationd.cli import describe_job
from automationd.config.model import JobSpec as Spec
from automationd.config.model import Misfire, Overlap, PythonAction
from automationd.core.runstate import RunState
from automationd.core.schedule import parse_schedule
from automationd.ctl_render import job_detail
from automationd.engine.jobs import JobRuntime, JobTable, next_fires, schedule_for
from automationd.engine.scheduler import MARK, Scheduler
from automationd.obs.metrics import Metrics
from automationd.records import Trigger
from automationd.store.write import Write
from automationd.units import rfc3339
from tests.support.clock import FakeClock

T0 = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()
ACTION = PythonAction(callable="x:y")


@dataclass
class FakeEngine:
    """Stands in for the launcher, the report and the store, recording what the scheduler
    asks for; a created run stays 'running' until ``finish``."""

    clock: FakeClock
    runs: list[tuple[str, Trigger, float | None]] = field(default_factory=list)
    skipped: list[tuple[str, float | None, str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    keep_running: bool = False
    live: dict[str, JobRuntime] = field(default_factory=dict)
    _n: int = 0

    # -- as the launcher
    def prepare(
        self,
        job: JobRuntime,
        *,
        trigger: Trigger,
        scheduled_for: float | None,
        after: tuple[Any, ...] = (),
    ) -> Any:
        self._n += 1
        job.count_run(f"r{self._n}")
        self.runs.append((job.name, trigger, scheduled_for))
        done = object()
        return SimpleNamespace(
            id=f"r{self._n}",
            state=RunState.QUEUED if after else RunState.RUNNING,
            job=job,
            after=after,
            ended=lambda: done,
        )

    def launch(self, lives: list[Any], *, herd: bool = False) -> None:
        if self.keep_running:
            for live in lives:
                live.job.active[live.id] = live
                self.live[live.id] = live.job

    def cancel(self, run_id: str, reason: str) -> None:
        self.cancelled.append(run_id)
        self.live.pop(run_id).active.pop(run_id)  # as if its task ended at once

    # -- as the report
    def skipped_run(
        self,
        job: JobRuntime,
        *,
        trigger: Trigger,
        scheduled_for: float | None,
        reason: str,
        made: Any = None,
    ) -> None:
        self.skipped.append((job.name, scheduled_for, reason))

    # -- as the store
    def post(self, writes: list[Write]) -> None:
        self.writes.extend(writes)

    def mark(self) -> float:
        """The last persisted scheduler mark."""
        return float(next(w.params[5] for w in reversed(self.writes) if w.params[0] == MARK))


def spec(name: str, schedule: str, **kw: Any) -> Spec:
    return Spec(name=name, schedule=schedule, action=ACTION, **kw)


def build(
    *specs: Spec,
    clock: FakeClock | None = None,
    baseline: float | None = None,
    rows: dict[str, float] | None = None,
) -> tuple[Scheduler, FakeEngine, JobTable, Metrics]:
    clock = clock or FakeClock(wall=T0)
    engine = FakeEngine(clock)
    jobs = JobTable()
    for s in specs:
        job = JobRuntime(spec=s, schedule=schedule_for(s))
        job.last_scheduled = (rows or {}).get(s.name)
        jobs.put(job)
    metrics = Metrics()
    report = SimpleNamespace(skipped=engine.skipped_run)
    sched = Scheduler(
        launcher=cast(Any, engine),
        report=cast(Any, report),
        store=cast(Any, engine),
        jobs=jobs,
        clock=cast(Any, clock),
        rng=random.Random(7),
        metrics=metrics,
    )
    sched.baseline = baseline
    sched.load(catch_up=True)
    return sched, engine, jobs, metrics


def run_for(sched: Scheduler, clock: FakeClock, seconds: float, step: float = 0.25) -> None:
    """Advance time in small steps, letting the scheduler handle whatever came due."""
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        clock.advance(step)
        while sched.step():
            pass


def missed(metrics: Metrics, job: str) -> float:
    return metrics.fires_missed_total.labels(job).__dict__["_value"].get()  # type: ignore[no-any-return]


def test_cron_fires_each_due_time_with_nominal_scheduled_for() -> None:
    """A `*/10 * * * * *` job fires at each 10 s boundary; scheduled_for is the due time."""
    sched, engine, _, _ = build(spec("ten", "*/10 * * * * *"))
    clock = engine.clock
    run_for(sched, clock, 35)
    assert engine.runs == [("ten", Trigger.SCHEDULE, T0 + s) for s in (10, 20, 30)]


def test_every_is_anchored_to_the_previous_scheduled_fire() -> None:
    """`@every 5s` fires at start+5, +10, +15 even when the scheduler wakes late."""
    sched, engine, _, _ = build(spec("five", "@every 5s"))
    run_for(sched, engine.clock, 16, step=0.7)
    assert [r[2] for r in engine.runs] == [T0 + 5, T0 + 10, T0 + 15]


def test_jitter_delays_the_fire_but_not_scheduled_for() -> None:
    """With jitter, the fire waits a random extra (from the injected RNG) within the jitter,
    while scheduled_for stays the nominal time."""
    sched, engine, jobs, _ = build(spec("j", "*/10 * * * * *", jitter=5.0))
    job = jobs.get("j")
    assert job is not None and job.wheel_handle is not None
    extra = job.wheel_handle.deadline - (T0 + 10)
    assert 0 < extra <= 5.0
    run_for(sched, engine.clock, 10 + extra - 0.01, step=0.01)
    assert engine.runs == []
    run_for(sched, engine.clock, 0.05, step=0.01)
    assert engine.runs == [("j", Trigger.SCHEDULE, T0 + 10)]


@pytest.mark.parametrize(("policy", "expect_misfire"), [(Misfire.RUN_ONCE, 1), (Misfire.SKIP, 0)])
def test_forward_wall_jump_turns_due_fires_into_misfires(
    policy: Misfire, expect_misfire: int
) -> None:
    """1. A `*/10 s` job (grace 30 s) fires at +10 s.
    2. The wall clock jumps forward one hour (monotonic time does not).
    Result: fires older than the grace follow the policy (one `misfire` run of the latest, or
    none) and are counted as missed; the 3 fires inside the grace run normally, late; the
    job then goes on at the next 10 s boundary."""
    sched, engine, _, metrics = build(
        spec("ten", "*/10 * * * * *", misfire=policy, misfire_grace=30.0)
    )
    clock = engine.clock
    run_for(sched, clock, 10.2)
    assert [r[2] for r in engine.runs] == [T0 + 10]
    clock.jump_wall(3600)
    now = clock.time()  # T0 + 3610.2
    while sched.step():
        pass
    misfires = [r for r in engine.runs if r[1] is Trigger.MISFIRE]
    late = [r[2] for r in engine.runs[1:] if r[1] is Trigger.SCHEDULE]
    assert len(misfires) == expect_misfire
    if misfires:
        assert misfires[0][2] == T0 + 3580  # the latest fire before now - grace
    assert late == [T0 + 3590, T0 + 3600, T0 + 3610]
    dropped = (3580 - 20) // 10 + 1 - expect_misfire  # fires 20 .. 3580
    assert missed(metrics, "ten") == dropped
    run_for(sched, clock, 10)
    assert engine.runs[-1] == ("ten", Trigger.SCHEDULE, T0 + 3620)
    assert now < T0 + 3620 <= clock.time()


def test_backward_wall_jump_never_refires_a_handled_time() -> None:
    """1. A `*/10 s` job fires at +10 and +20.
    2. The wall clock steps back 60 s; time then runs on for 90 s.
    Result: no fire repeats +10 or +20; the next fire is +30 (reached at wall time +30)."""
    sched, engine, _, _ = build(spec("ten", "*/10 * * * * *"))
    clock = engine.clock
    run_for(sched, clock, 21)
    assert [r[2] for r in engine.runs] == [T0 + 10, T0 + 20]
    clock.jump_wall(-60)
    run_for(sched, clock, 70)  # wall goes from T0 - 39 to T0 + 31
    assert [r[2] for r in engine.runs] == [T0 + 10, T0 + 20, T0 + 30]
    assert all(r[1] is Trigger.SCHEDULE for r in engine.runs)


def test_backward_jump_keeps_never_fired_jobs_from_firing_early_twice() -> None:
    """After a backward jump, an `@at` that already fired is not fired again."""
    at = rfc3339(T0 + 5)
    sched, engine, jobs, _ = build(spec("once", f"@at {at}"))
    clock = engine.clock
    run_for(sched, clock, 6)
    clock.jump_wall(-30)
    run_for(sched, clock, 40)
    assert engine.runs == [("once", Trigger.SCHEDULE, T0 + 5)]
    job = jobs.get("once")
    assert job is not None and job.state == "completed"


@pytest.mark.parametrize(("policy", "runs"), [(Misfire.RUN_ONCE, 1), (Misfire.SKIP, 0)])
def test_restart_catch_up_of_never_fired_at_counts_from_the_mark(
    policy: Misfire, runs: int
) -> None:
    """1. A first scheduler persists its mark; it stops before an `@at` fire (grace 1 s).
    2. A second scheduler starts 10 s after the fire with that mark as its baseline.
    Result: run_once makes one `misfire` run, skip makes none and counts one missed fire; the
    job ends completed either way, and a third start counts nothing more."""
    at = spec("once", f"@at {rfc3339(T0 + 5)}", misfire=policy, misfire_grace=1.0)
    _, engine1, _, _ = build(at)
    mark = engine1.mark()
    assert mark == T0
    clock = FakeClock(wall=T0 + 15)
    _, engine2, jobs, metrics = build(at, clock=clock, baseline=mark)
    assert [r[1:] for r in engine2.runs] == [(Trigger.MISFIRE, T0 + 5)] * runs
    assert missed(metrics, "once") == 1 - runs
    job = jobs.get("once")
    assert job is not None and job.state == "completed"
    assert metrics.jobs.labels("completed")._value.get() == 1


def test_skipped_misfires_are_persisted_and_counted_once() -> None:
    """A skip-policy job that missed fires persists its advanced last scheduled fire, so a
    second start with that state counts no new misses."""
    s = spec("ten", "*/10 * * * * *", misfire=Misfire.SKIP, misfire_grace=0.0)
    clock = FakeClock(wall=T0 + 100.5)
    _, engine, jobs, metrics = build(s, clock=clock, rows={"ten": T0})
    assert missed(metrics, "ten") == 10
    job = jobs.get("ten")
    assert job is not None and job.last_scheduled is not None
    assert T0 + 100 <= job.last_scheduled < T0 + 100.5
    assert any(w.params[0] == "ten" for w in engine.writes)
    _, engine2, _, metrics2 = build(s, clock=clock, rows={"ten": job.last_scheduled})
    assert missed(metrics2, "ten") == 0 and engine2.runs == []


def test_every_skip_keeps_its_grid() -> None:
    """Dropping missed `@every 7s` fires keeps later fires on the original 7 s grid."""
    s = spec("seven", "@every 7s", misfire=Misfire.SKIP, misfire_grace=0.0)
    sched, engine, _, _ = build(s, clock=FakeClock(wall=T0 + 100), rows={"seven": T0})
    run_for(sched, engine.clock, 6)
    assert [r[2] for r in engine.runs] == [T0 + 105]


@pytest.mark.parametrize(
    ("overlap", "skipped", "cancelled", "created"),
    [
        (Overlap.SKIP, 2, 0, 1),
        (Overlap.ALLOW, 0, 0, 3),
        (Overlap.CANCEL_PREVIOUS, 0, 2, 3),
        (Overlap.QUEUE, 1, 0, 2),
    ],
)
def test_overlap_policy_applied_to_fires_while_a_run_is_unfinished(
    overlap: Overlap, skipped: int, cancelled: int, created: int
) -> None:
    """With earlier runs never finishing, three fires give: skip → 1 run + 2 skipped (with a
    reason); allow → 3 runs; cancel_previous → 3 runs, 2 cancels; queue → 2 runs, 1 skipped."""
    sched, engine, _, _ = build(spec("o", "*/10 * * * * *", overlap=overlap))
    engine.keep_running = True
    run_for(sched, engine.clock, 31)
    assert len(engine.runs) == created
    assert len(engine.skipped) == skipped
    assert all("overlap" in reason for _, _, reason in engine.skipped)
    assert len(engine.cancelled) == cancelled


def test_max_runs_completes_the_job() -> None:
    """A job with max_runs = 2 fires twice, then is completed and off the wheel."""
    sched, engine, jobs, metrics = build(spec("two", "*/10 * * * * *", max_runs=2))
    run_for(sched, engine.clock, 45)
    assert len(engine.runs) == 2
    job = jobs.get("two")
    assert job is not None and job.state == "completed" and job.next_run is None
    assert len(sched.wheel) == 0
    assert metrics.jobs.labels("completed")._value.get() == 1


async def test_run_loop_wakes_on_the_event_and_stops() -> None:
    """The driver loop sleeps until woken and exits once stopped (no fixed-tick polling)."""
    sched, _, _, _ = build()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(sched.run())
        await asyncio.sleep(0)
        sched.stopped = True
        sched.wake()
        await task


BERLIN = ZoneInfo("Europe/Berlin")


def _berlin(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def test_preview_marks_spring_forward_and_fall_back_fires() -> None:
    """`30 2 * * *` in Berlin: the March change fires at 03:00 marked `dst-gap`; the October
    change's 02:30 (first pass) is marked `dst-fold`; other days have no note."""
    sched = parse_schedule("30 2 * * *", BERLIN)
    spring = next_fires(sched, _berlin("2026-03-27T12:00:00"), 3)
    assert [n for _, n in spring] == [None, "dst-gap", None]
    assert spring[1][0] == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC).timestamp()
    autumn = next_fires(sched, _berlin("2026-10-24T12:00:00"), 2)
    assert [n for _, n in autumn] == ["dst-fold", None]
    assert autumn[0][0] == dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC).timestamp()


def test_check_config_and_jobs_show_render_the_dst_marker() -> None:
    """check-config's line and `jobs show`'s table both carry the `dst-gap` marker."""
    now = _berlin("2026-03-27T12:00:00")
    line = describe_job(spec("b", "30 2 * * *", timezone="Europe/Berlin"), now)
    assert "[dst-gap]" in line and line.count("2026-03-") == 3
    fires = next_fires(parse_schedule("30 2 * * *", BERLIN), now, 5)
    text = job_detail(
        {"name": "b", "next_fires": [{"at": rfc3339(t), "note": n} for t, n in fires]}
    )
    assert text.count("dst-gap") == 1 and text.count("2026-0") == 5
