"""Overlap and misfire policies as pure decisions (SPEC §2 "Policies").

Overlap — what a new fire does while earlier runs of the same job are unfinished. One table,
keyed by (policy, busy state):

    policy            idle    running   running + one queued
    skip              FIRE    SKIP      SKIP
    queue             FIRE    QUEUE     SKIP      (at most one waits)
    allow             FIRE    FIRE      FIRE
    cancel_previous   FIRE    CANCEL_PREVIOUS     CANCEL_PREVIOUS

A run that is queued but nothing is running counts as busy (it is about to start), so a queue
job still keeps at most one waiting.

Misfire — fires that came due while the daemon was down or behind. Given the last fire the
scheduler handled and ``now``, every fire ``f`` with ``last < f <= now`` is one of:
- *late* (``f >= now - grace``): not a misfire; it runs normally, just late (``late``);
- *missed* (``f < now - grace``): ``skip`` drops all, ``run_once`` runs the latest one,
  ``run_all`` runs the latest ``limit`` of them (oldest dropped first), in time order (``fire``).
Dropped fires are counted in ``missed`` for ``fires_missed_total``; for cron the walk stops
counting at ``COUNT_CAP`` (and finds the latest fires by searching back in widening windows),
so a per-second job that was down for a month costs milliseconds, not seconds. ``@every`` fires
lie on the grid ``last + k * interval`` and are counted exactly by arithmetic.
Late fires beyond ``limit`` are dropped too (oldest first) and counted in ``missed``.
``next_due`` is the first regular fire strictly after ``now``.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from automationd.config.model import Misfire, Overlap
from automationd.core.schedule import Schedule

COUNT_CAP = 10_000
# Look-back windows (seconds) used to find the most recent missed fires once the counting walk
# hit COUNT_CAP: a minute, an hour, a day, a week, ~a month, ~a year, ~30 years.
_TAIL_WINDOWS = (60.0, 3600.0, 86400.0, 7 * 86400.0, 31 * 86400.0, 366 * 86400.0, 1e9)


class OverlapDecision(enum.StrEnum):
    FIRE = "fire"
    SKIP = "skip"
    QUEUE = "queue"
    CANCEL_PREVIOUS = "cancel_previous"


_IDLE, _RUNNING, _FULL = 0, 1, 2
_D = OverlapDecision
OVERLAP_TABLE: dict[tuple[Overlap, int], OverlapDecision] = {
    (Overlap.SKIP, _IDLE): _D.FIRE,
    (Overlap.SKIP, _RUNNING): _D.SKIP,
    (Overlap.SKIP, _FULL): _D.SKIP,
    (Overlap.QUEUE, _IDLE): _D.FIRE,
    (Overlap.QUEUE, _RUNNING): _D.QUEUE,
    (Overlap.QUEUE, _FULL): _D.SKIP,
    (Overlap.ALLOW, _IDLE): _D.FIRE,
    (Overlap.ALLOW, _RUNNING): _D.FIRE,
    (Overlap.ALLOW, _FULL): _D.FIRE,
    (Overlap.CANCEL_PREVIOUS, _IDLE): _D.FIRE,
    (Overlap.CANCEL_PREVIOUS, _RUNNING): _D.CANCEL_PREVIOUS,
    (Overlap.CANCEL_PREVIOUS, _FULL): _D.CANCEL_PREVIOUS,
}


def decide_overlap(policy: Overlap, unfinished: int, queued: int) -> OverlapDecision:
    """What a new fire does, given the job's unfinished (started) and overlap-queued runs."""
    if unfinished < 0 or queued < 0:
        raise ValueError(f"negative counts: unfinished={unfinished} queued={queued}")
    busy = _FULL if queued else (_RUNNING if unfinished else _IDLE)
    return OVERLAP_TABLE[(policy, busy)]


@dataclass(frozen=True, slots=True, kw_only=True)
class MisfirePlan:
    fire: tuple[float, ...]  # missed fires to run now as catch-up (trigger "misfire"), in order
    late: tuple[float, ...]  # fires within the grace window: run normally (trigger "schedule")
    missed: int  # missed fires dropped (capped near COUNT_CAP), for fires_missed_total
    next_due: float | None  # first regular fire strictly after now


def plan_misfire(
    schedule: Schedule,
    last_scheduled: float,
    now: float,
    policy: Misfire,
    grace: float,
    limit: int = 100,
) -> MisfirePlan:
    """Decide what to do about fires in ``(last_scheduled, now]`` (see the module docstring)."""
    if limit < 1 or grace < 0:
        raise ValueError(f"need limit >= 1 and grace >= 0, got limit={limit} grace={grace}")
    keep = {Misfire.SKIP: 0, Misfire.RUN_ONCE: 1, Misfire.RUN_ALL: limit}[policy]
    before_cutoff = math.nextafter(now - grace, -math.inf)  # f < now - grace  <=>  f <= this
    if schedule.interval is not None:
        return _plan_every(schedule.interval, last_scheduled, before_cutoff, now, keep, limit)
    missed_total, fire = _scan(schedule, last_scheduled, before_cutoff, keep)
    late_total, late = _scan(schedule, max(last_scheduled, before_cutoff), now, limit)
    return MisfirePlan(
        fire=fire,
        late=late,
        missed=missed_total - len(fire) + late_total - len(late),
        next_due=schedule.next_after(now),
    )


def _plan_every(
    interval: float, last: float, before_cutoff: float, now: float, keep: int, limit: int
) -> MisfirePlan:
    """``@every`` fires sit on the grid ``last + k * interval``: count them, don't walk."""

    def fires_upto(t: float) -> int:  # number of k >= 1 with last + k * interval <= t
        k = max(0, math.floor((t - last) / interval))
        while k > 0 and last + k * interval > t:
            k -= 1
        while last + (k + 1) * interval <= t:
            k += 1
        return k

    k_missed = fires_upto(before_cutoff)
    k_now = fires_upto(now)
    fire = tuple(last + k * interval for k in range(max(1, k_missed - keep + 1), k_missed + 1))
    late_from = max(k_missed + 1, k_now - limit + 1)
    late = tuple(last + k * interval for k in range(late_from, k_now + 1))
    return MisfirePlan(
        fire=fire,
        late=late,
        missed=k_now - len(fire) - len(late),
        next_due=last + (k_now + 1) * interval,
    )


def _scan(
    schedule: Schedule, after: float, until: float, keep: int
) -> tuple[int, tuple[float, ...]]:
    """Count fires in ``(after, until]`` (up to COUNT_CAP) and return the latest ``keep``."""
    tail: deque[float] = deque(maxlen=keep)
    count = 0
    f = schedule.next_after(after)
    while f is not None and f <= until:
        count += 1
        tail.append(f)
        if count >= COUNT_CAP:
            return count, _recent(schedule, after, until, keep)
        f = schedule.next_after(f)
    return count, tuple(tail)


def _recent(schedule: Schedule, after: float, until: float, keep: int) -> tuple[float, ...]:
    """The latest ``keep`` fires in ``(after, until]``, searching back in widening windows,
    for when walking forward from ``after`` would take too long."""
    if keep == 0:
        return ()
    out: deque[float] = deque(maxlen=keep)
    for window in _TAIL_WINDOWS:
        start = max(after, until - window)
        out.clear()
        f = schedule.next_after(start)
        while f is not None and f <= until:
            out.append(f)
            f = schedule.next_after(f)
        if len(out) >= keep or start <= after:
            break
    return tuple(out)
