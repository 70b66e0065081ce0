"""Backfill windows: the fire times of a schedule inside [since, until) (pure).

A backfill (``jobs.backfill``) makes one run per fire in a past window. Cron and ``@at``
schedules answer "next fire after t" directly. ``@every`` counts from the previous fire, so
its fires lie on a grid ``anchor + k * interval``; the anchor is a fire the job really had
(or will have), so backfilled runs line up with the regular ones.
"""

from __future__ import annotations

import math

from automationd.core.schedule import Schedule

MAX_FIRES = 10_000  # runs one backfill may create


def fires_between(
    schedule: Schedule,
    since: float,
    until: float,
    *,
    anchor: float | None = None,
    cap: int = MAX_FIRES + 1,
) -> list[float]:
    """Fire times ``f`` with ``since <= f < until``, in order, at most ``cap`` of them (ask
    for one more than allowed to learn that a window is too big without walking it all)."""
    if not (math.isfinite(since) and math.isfinite(until)) or until <= since or cap < 1:
        return []
    out: list[float] = []
    if schedule.interval is not None:
        step = schedule.interval
        base = since if anchor is None else anchor
        k = math.ceil((since - base) / step)
        while base + k * step < since:  # float error in the division
            k += 1
        while base + (k - 1) * step >= since:
            k -= 1
        f = base + k * step
        while f < until and len(out) < cap:
            out.append(f)
            k += 1
            f = base + k * step
        return out
    nxt = schedule.next_after(since - 1.0)  # cron looks from the next whole second
    while nxt is not None and nxt < until and len(out) < cap:
        if nxt >= since:
            out.append(nxt)
        nxt = schedule.next_after(nxt)
    return out
