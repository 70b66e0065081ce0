"""Overlap and misfire decisions (SPEC §2 "Policies")."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from automationd.config.model import Misfire, Overlap
from automationd.core.policy import (
    COUNT_CAP,
    OVERLAP_TABLE,
    MisfirePlan,
    OverlapDecision,
    decide_overlap,
    plan_misfire,
)
from automationd.core.schedule import parse_schedule

D = OverlapDecision
UTC = ZoneInfo("UTC")


def ts(hhmmss: str, day: str = "2026-05-01") -> float:
    return dt.datetime.fromisoformat(f"{day}T{hhmmss}+00:00").timestamp()


@pytest.mark.parametrize(
    ("policy", "unfinished", "queued", "decision"),
    [
        (Overlap.SKIP, 0, 0, D.FIRE),
        (Overlap.SKIP, 1, 0, D.SKIP),
        (Overlap.SKIP, 3, 0, D.SKIP),
        (Overlap.QUEUE, 0, 0, D.FIRE),
        (Overlap.QUEUE, 1, 0, D.QUEUE),
        (Overlap.QUEUE, 1, 1, D.SKIP),  # at most one waits
        (Overlap.QUEUE, 0, 1, D.SKIP),  # the waiting one is about to start: still full
        (Overlap.ALLOW, 0, 0, D.FIRE),
        (Overlap.ALLOW, 5, 0, D.FIRE),
        (Overlap.ALLOW, 5, 1, D.FIRE),
        (Overlap.CANCEL_PREVIOUS, 0, 0, D.FIRE),
        (Overlap.CANCEL_PREVIOUS, 1, 0, D.CANCEL_PREVIOUS),
        (Overlap.CANCEL_PREVIOUS, 2, 1, D.CANCEL_PREVIOUS),
    ],
)
def test_decide_overlap(policy: Overlap, unfinished: int, queued: int, decision: D) -> None:
    """Each overlap policy decides as the SPEC table says."""
    assert decide_overlap(policy, unfinished, queued) is decision


def test_overlap_table_is_complete() -> None:
    """Every policy has a decision for every busy state; an idle job always fires."""
    assert len(OVERLAP_TABLE) == len(Overlap) * 3
    assert all(decide_overlap(p, 0, 0) is D.FIRE for p in Overlap)


def test_negative_counts_are_rejected() -> None:
    """Negative counts are a caller bug and raise."""
    with pytest.raises(ValueError, match="negative"):
        decide_overlap(Overlap.SKIP, -1, 0)


EVERY_10 = "*/10 * * * *"


@pytest.mark.parametrize(
    ("policy", "fire", "missed"),
    [
        (Misfire.SKIP, (), 5),
        (Misfire.RUN_ONCE, ("10:50:00",), 4),
        (Misfire.RUN_ALL, ("10:10:00", "10:20:00", "10:30:00", "10:40:00", "10:50:00"), 0),
    ],
)
def test_misfire_policies_over_one_hour_down(
    policy: Misfire, fire: tuple[str, ...], missed: int
) -> None:
    """Down from 10:00 to 11:00:30 with 60 s grace: 10:10-10:50 are missed, 11:00 is late
    (runs normally) and 11:10 is next; the policy picks which missed fires still run."""
    sched = parse_schedule(EVERY_10, UTC)
    plan = plan_misfire(sched, ts("10:00:00"), ts("11:00:30"), policy, grace=60)
    assert plan == MisfirePlan(
        fire=tuple(ts(f) for f in fire),
        late=(ts("11:00:00"),),
        missed=missed,
        next_due=ts("11:10:00"),
    )


@pytest.mark.parametrize(
    ("now", "grace", "late", "missed"),
    [
        ("10:09:59", 60, (), 0),  # nothing due yet
        ("10:10:00", 0, ("10:10:00",), 0),  # due exactly now: on time
        ("10:11:00", 60, ("10:10:00",), 0),  # exactly at the grace edge: late, not missed
        ("10:11:00.001", 60, (), 1),  # just past the grace edge: missed
        ("10:30:00", 1200, ("10:10:00", "10:20:00", "10:30:00"), 0),
    ],
)
def test_grace_window_edges(now: str, grace: float, late: tuple[str, ...], missed: int) -> None:
    """Fires with due >= now - grace are late, not misfires."""
    sched = parse_schedule(EVERY_10, UTC)
    plan = plan_misfire(sched, ts("10:00:00"), ts(now), Misfire.SKIP, grace=grace)
    assert (plan.late, plan.missed, plan.fire) == (tuple(ts(x) for x in late), missed, ())


def test_run_all_keeps_the_latest_limit_missed_fires() -> None:
    """run_all runs at most `limit` missed fires, the most recent ones, in time order."""
    sched = parse_schedule("@every 1m", UTC)
    last = ts("00:00:00")
    plan = plan_misfire(sched, last, last + 250 * 60 + 30, Misfire.RUN_ALL, grace=60, limit=100)
    assert plan.fire == tuple(last + i * 60 for i in range(150, 250))
    assert plan.missed == 249 - 100
    assert plan.late == (last + 250 * 60,)
    assert plan.next_due == last + 251 * 60


def test_long_outage_of_a_per_second_job_is_capped_and_fast() -> None:
    """A per-second job down for a week: the count stops near COUNT_CAP, run_once still gets
    the true latest missed fire, and planning takes well under a second."""
    sched = parse_schedule("* * * * * *", UTC)
    last = ts("00:00:00")
    now = last + 7 * 86400 + 0.5
    started = time.perf_counter()
    plan = plan_misfire(sched, last, now, Misfire.RUN_ONCE, grace=30)
    assert time.perf_counter() - started < 1.0
    assert plan.fire == (now - 0.5 - 30,)  # the last fire before now - grace
    assert COUNT_CAP - 1 <= plan.missed <= COUNT_CAP + 31
    assert len(plan.late) == 30
    assert plan.next_due == now + 0.5


def test_run_all_after_a_long_outage_returns_the_latest_hundred() -> None:
    """run_all past the count cap still returns the most recent `limit` missed fires."""
    sched = parse_schedule("* * * * * *", UTC)
    last = ts("00:00:00")
    cutoff = last + 3 * 86400
    plan = plan_misfire(sched, last, cutoff, Misfire.RUN_ALL, grace=0)
    assert plan.fire == tuple(cutoff - 100 + i for i in range(100))


def test_every_after_a_long_outage_is_exact_and_on_the_grid() -> None:
    """A per-second @every down for 30 days: exact count by arithmetic, fires on the grid."""
    sched = parse_schedule("@every 1s", UTC)
    last = 1000.25
    now = last + 30 * 86400 + 0.5
    plan = plan_misfire(sched, last, now, Misfire.RUN_ONCE, grace=10)
    assert plan.fire == (last + 30 * 86400 - 10,)
    assert plan.late == tuple(last + 30 * 86400 - 9 + i for i in range(10))
    assert plan.missed == 30 * 86400 - 10 - 1
    assert plan.next_due == last + 30 * 86400 + 1


def test_missed_one_shot() -> None:
    """An @at that passed while down runs once as catch-up, and nothing is due after it."""
    sched = parse_schedule("@at 2026-05-01T10:00:00Z", UTC)
    plan = plan_misfire(sched, ts("09:00:00"), ts("12:00:00"), Misfire.RUN_ONCE, grace=60)
    assert plan == MisfirePlan(fire=(ts("10:00:00"),), late=(), missed=0, next_due=None)


def test_every_counts_from_the_last_scheduled_fire() -> None:
    """@every's missed fires and next_due are anchored at last_scheduled, not at now."""
    sched = parse_schedule("@every 15m", UTC)
    last = ts("10:00:07")
    plan = plan_misfire(sched, last, ts("11:00:00"), Misfire.RUN_ALL, grace=60)
    assert plan.fire == (last + 900, last + 1800, last + 2700)
    assert plan.next_due == last + 3600


@pytest.mark.parametrize(("limit", "grace"), [(0, 60.0), (1, -1.0)])
def test_bad_arguments_are_rejected(limit: int, grace: float) -> None:
    """limit < 1 or a negative grace raise ValueError."""
    sched = parse_schedule(EVERY_10, UTC)
    with pytest.raises(ValueError, match="limit"):
        plan_misfire(sched, 0.0, 10.0, Misfire.RUN_ALL, grace=grace, limit=limit)
