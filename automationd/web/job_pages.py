"""``/jobs`` (filter, search, pages of ``PER_PAGE``) and ``/jobs/NAME`` (spec, next fires with
their DST notes, recent runs, the trigger / pause / resume buttons).

Why jobs are read from the engine's table and not through ``jobs.list``: that command answers
every job, and at 100,000 jobs that is half a second of JSON for a page that shows 50. The
page walks the table in its own order (config order, then API jobs) and builds rows only
for the jobs it shows; their success rates come from one indexed query for the page.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from automationd.core.words import schedule_words
from automationd.engine.jobs import JobRuntime, JobTable, next_fires
from automationd.store.api import RunQuery
from automationd.units import rfc3339
from automationd.web.console import Console, render

PER_PAGE = 50
RATE_OF = 20  # success rate over the last 20 runs with an outcome
FIRES = 10
_STATES = ("enabled", "paused", "completed")
ENDED = ("succeeded", "failed", "partial", "skipped", "cancelled", "stale", "rolled_back")


def local_time(t: float, zone: str) -> str:
    try:
        tz: dt.tzinfo = ZoneInfo(zone)
    except (KeyError, ValueError):
        tz = dt.UTC
    return dt.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")


def fire_rows(schedule: Any, now: float, zone: str, count: int = FIRES) -> list[dict[str, Any]]:
    return [
        {"at": t, "local": local_time(t, zone), "note": note}
        for t, note in next_fires(schedule, now, count)
    ]


def make_job_pages(console: Console) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    search = NameSearch(console.jobs)

    @routes.get("/jobs")
    async def jobs_page(request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        state = request.query.get("state", "")
        if state not in _STATES:
            state = ""
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        picked: Iterator[JobRuntime] = iter(console.jobs)
        if q or state:
            found = search(q) if q else list(console.jobs)
            if state:
                found = _in_state(found, state)
            total = len(found)
            picked = iter(found)
        else:
            total = len(console.jobs)
        pages = max(1, math.ceil(total / PER_PAGE))
        page = min(page, pages)
        shown = list(itertools.islice(picked, (page - 1) * PER_PAGE, page * PER_PAGE))
        recent = await console.store.recent_states([j.name for j in shown], RATE_OF)
        rows = [_row(j, recent.get(j.name, [])) for j in shown]

        def page_url(n: int) -> str:
            params = {k: v for k, v in (("q", q), ("state", state)) if v}
            params["page"] = str(n)
            return f"/jobs?{urlencode(params)}"

        live = {"job": ",".join(j.name for j in shown), "state": ",".join(ENDED)}
        return render(
            console,
            request,
            "jobs.html",
            stream=f"/runs/stream?{urlencode(live)}",  # the listed jobs' runs as they end
            rows=rows,
            q=q,
            state_filter=state,
            total=total,
            page=page,
            pages=pages,
            page_url=page_url,
        )

    @routes.get("/jobs/{name}")
    async def job_page(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        job = console.jobs.get(name)
        if job is None:
            return render(
                console,
                request,
                "error.html",
                http_status=404,
                stream=None,
                title="No such job",
                message=f"There is no job named {name!r}.",
            )
        now = console.clock.time()
        fires = fire_rows(job.schedule, now, job.spec.timezone) if job.schedule else []
        runs = await console.store.runs(RunQuery(job=name, limit=20))
        return render(
            console,
            request,
            "job.html",
            stream=f"/runs/stream?{urlencode({'job': name})}",
            job=job.to_json(),
            words=schedule_words(job.spec.schedule, job.spec.timezone),
            zone=job.spec.timezone,
            fires=fires,
            spec=dict(job.spec.raw),
            runs=[r.to_json() for r in runs],
        )

    return routes


class NameSearch:
    """Jobs whose name contains a text: a scan of a cached name list (a str test is ~4x
    cheaper than reading each job's name through its spec), kept until the table changes."""

    def __init__(self, jobs: JobTable) -> None:
        self._jobs = jobs
        self._version = -1
        self._names: list[str] = []

    def __call__(self, q: str) -> list[JobRuntime]:
        jobs = self._jobs
        if self._version != jobs.version:
            self._version, self._names = jobs.version, jobs.names()
        found = (jobs.get(n) for n in self._names if q in n)
        return [j for j in found if j is not None]


def _in_state(jobs: list[JobRuntime], state: str) -> list[JobRuntime]:
    """Plain attribute tests, not the ``state`` property: 100,000 calls of it cost 15 ms."""
    if state == "completed":
        return [j for j in jobs if j.completed]
    if state == "paused":
        return [j for j in jobs if j.paused and not j.completed]
    return [j for j in jobs if not j.paused and not j.completed]


def _row(job: JobRuntime, states: list[str]) -> dict[str, Any]:
    spec = job.spec
    ok = sum(s == "succeeded" for s in states)
    return {
        "name": spec.name,
        "schedule": spec.schedule,
        "words": schedule_words(spec.schedule, spec.timezone),
        "on": spec.on,
        "state": job.state,
        "next_run": rfc3339(job.next_run) if job.enabled else None,
        "last_state": job.last_run_state or (states[0] if states else None),
        "rate": ok / len(states) if states else None,
        "ok": ok,
        "n": len(states),
    }
