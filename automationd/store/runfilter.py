"""The WHERE of a runs query, and the partial indexes a state filter can use (pure).

Ids sort by creation time (core/ids.py) and start with the creation millisecond, so a time
window is a primary-key range; a state filter names its partial index's own condition so the
planner sees that the index holds every row it asks for.
"""

from __future__ import annotations

import math
from typing import Any

from automationd.store.api import RunQuery

# States the partial indexes hold (schema v1 ``runs_live``, migration 4 ``runs_unsuccessful``):
# a state filter repeats the index's own condition so the planner can use it.
LIVE_STATES = ("queued", "running", "retrying")
UNSUCCESSFUL = ("failed", "partial", "cancelled", "skipped", "previewed", "stale", "rolled_back")
STATE_INDEX = {
    **{s: "state IN ('queued', 'running', 'retrying')" for s in LIVE_STATES},
    **{
        s: "state IN ('failed', 'partial', 'cancelled', 'skipped', 'previewed', 'stale',"
        " 'rolled_back')"
        for s in UNSUCCESSFUL
    },
}


def ms_id(ts: float, plus: int = 0) -> str:
    """The id prefix of ``ts``'s millisecond (+ ``plus``): bounds are whole milliseconds, as
    listed (RFC 3339 with ms), and the small bias undoes float error in ``.123`` → 0.12299…"""
    return f"{max(0, math.floor(ts * 1000 + 0.01) + plus):012x}"


def run_filters(q: RunQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("job", q.job), ("state", q.state), ("trigger", q.trigger)):
        if value is not None:
            where.append(f"{column}=?")
            params.append(value)
    if q.since is not None:
        where.append("id >= ?")
        params.append(ms_id(q.since))
    if q.until is not None:
        where.append("id < ?")
        params.append(ms_id(q.until, 1))
    if q.before is not None:
        where.append("id < ?")
        params.append(q.before)
    return where, params
