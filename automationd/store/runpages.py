"""Reading runs a page at a time, for every SQL backend: the WHERE of a runs query, the
partial indexes a state filter can use, a bounded window for filters no index serves, and
each job's recent outcomes (the web console's jobs and runs pages; store/reads.py delegates).

Ids sort by creation time (core/ids.py) and start with the creation millisecond, so a time
window is a primary-key range; a state filter names its partial index's own condition so the
planner sees that the index holds every row it asks for.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from automationd.records import Run
from automationd.store.api import RunQuery
from automationd.store.rows import Row
from automationd.store.salvage import read_run

Fetch = Callable[[str, Sequence[Any]], Awaitable[Sequence[Row]]]

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


async def runs_window(
    fetch: Fetch, run_cols: str, q: RunQuery, scan: int
) -> tuple[list[Run], str | None]:
    """Like ``runs``, but looks at no more than the ``scan`` newest runs that the id range
    and the job allow (the indexed part), filtering state and trigger among them: a
    filter no index serves costs at most ``scan`` row reads, at any table size.

    Returns the matches and, when fewer than ``q.limit`` matched because the window ran
    out, the lowest id looked at (continue with ``before`` = it); else None.
    """
    ranged = RunQuery(job=q.job, since=q.since, until=q.until, before=q.before)
    where, params = run_filters(ranged)
    rest, rest_params = run_filters(RunQuery(state=q.state, trigger=q.trigger))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    inner = f"SELECT {run_cols} FROM runs {clause} ORDER BY id DESC LIMIT ?"
    outer = f" WHERE {' AND '.join(rest)}" if rest else ""
    # No ORDER BY outside: it would make SQLite read the whole window and sort it; the
    # window is read in its own order and the scan stops at the limit'th match.
    rows = await fetch(
        f"SELECT * FROM ({inner}) AS w{outer} LIMIT ?", (*params, scan, *rest_params, q.limit)
    )
    runs = sorted((read_run(r) for r in rows), key=lambda r: r.id, reverse=True)
    if len(runs) >= q.limit:
        return runs, None
    (last,) = await fetch(
        "SELECT COUNT(*) AS n, MIN(id) AS low FROM"
        f" (SELECT id FROM runs {clause} ORDER BY id DESC LIMIT ?) AS w",
        (*params, scan),
    )
    if int(last["n"]) < scan:
        return runs, None  # the window held every candidate: nothing older is left
    return runs, str(last["low"])


async def recent_states(fetch: Fetch, jobs: Sequence[str], per_job: int) -> dict[str, list[str]]:
    """The states of each job's ``per_job`` newest runs that ended with an outcome
    (succeeded, partial, failed), newest first: one indexed query for a page of jobs."""
    if not jobs:
        return {}
    part = (
        "SELECT * FROM (SELECT job, state FROM runs WHERE job=?"
        " AND state IN ('succeeded', 'partial', 'failed') ORDER BY id DESC LIMIT ?) AS r"
    )
    params: list[Any] = []
    for name in jobs:
        params += [name, per_job]
    rows = await fetch(" UNION ALL ".join([part] * len(jobs)), params)
    out: dict[str, list[str]] = {name: [] for name in jobs}
    for r in rows:
        out[r["job"]].append(r["state"])
    return out
