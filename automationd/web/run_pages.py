"""``/runs`` (filters, newest first, keyset pages) and ``/runs/ID`` (attempt timeline per
target, targets, payload and result, captured output that follows a live run).

Paging rule (why it stays fast at a million runs): every page is ``id < before ORDER BY id
DESC LIMIT n`` on an index. Filters an index serves (job; a state other than succeeded;
a time window, which is an id range) are plain index reads. The others (a trigger, a job
and a state together, succeeded) read at most ``SCAN`` candidate rows per page
(``Store.runs_window``); a page that found fewer matches links on from where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from automationd.admin.args import choice_arg, opt_id, opt_name, time_arg
from automationd.core.runstate import RunState
from automationd.errors import AdminError
from automationd.records import Trigger
from automationd.store.api import RunQuery
from automationd.store.runpages import LIVE_STATES, UNSUCCESSFUL
from automationd.web.console import Console, render

PER_PAGE = 50
SCAN = 10_000
_INDEXED_STATES = frozenset((*LIVE_STATES, *UNSUCCESSFUL))
_LIVE_FILTERS = ("job", "state", "trigger")  # what the page's script matches new runs on
_STATES = frozenset(s.value for s in RunState)
_TRIGGERS = frozenset(t.value for t in Trigger)


def runs_filter(query: Mapping[str, str], now: float) -> tuple[RunQuery, dict[str, str], str]:
    """The page's query string → (the store query, the filters as given, a problem or "").

    Each filter is read by the validator ``runs.list`` uses (admin/args.py); one it refuses
    is dropped and its message becomes the page's problem."""
    given = {k: query.get(k, "").strip() for k in ("job", "state", "trigger", "since", "until")}
    given["before"] = query.get("before", "").strip()
    readers: dict[str, Reader] = {
        "job": opt_name,
        "state": lambda args, key: choice_arg(args, key, _STATES),
        "trigger": lambda args, key: choice_arg(args, key, _TRIGGERS),
        "since": lambda args, key: time_arg(args, key, now),
        "until": lambda args, key: time_arg(args, key, now),
        "before": opt_id,
    }
    read, problem = read_filters(given, readers)
    q = RunQuery(**read, limit=PER_PAGE + 1)
    if not given["before"]:
        del given["before"]
    return q, given, problem


Reader = Callable[[dict[str, Any], str], Any]


def read_filters(given: dict[str, str], readers: dict[str, Reader]) -> tuple[dict[str, Any], str]:
    """Each filter typed on a page, read by its command's validator (admin/args.py); one that
    is refused is dropped (its ``given`` emptied) and its message is the page's problem."""
    read: dict[str, Any] = {}
    problem = ""
    for key, reader in readers.items():
        try:
            read[key] = reader({key: given[key]}, key) if given[key] else None
        except AdminError as exc:
            problem, given[key], read[key] = exc.message, "", None
    return read, problem


def indexed(q: RunQuery) -> bool:
    """True when an index serves every filter of ``q`` (see the module docstring)."""
    if q.trigger is not None:
        return False
    if q.state is None:
        return True
    return q.job is None and q.state in _INDEXED_STATES


def make_run_pages(console: Console) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/runs")
    async def runs_page(request: web.Request) -> web.Response:
        q, given, problem = runs_filter(request.query, console.clock.time())
        scanned_to = None
        if indexed(q):
            runs = await console.store.runs(q)
        else:
            runs, scanned_to = await console.store.runs_window(q, SCAN)
        base = {k: v for k, v in given.items() if v and k != "before"}
        older = None
        if len(runs) > PER_PAGE:
            runs = runs[:PER_PAGE]
            older = runs[-1].id
        elif scanned_to is not None:
            older = scanned_to
        return render(
            console,
            request,
            "runs.html",
            stream=(
                f"/runs/stream?{urlencode({k: v for k, v in base.items() if k in _LIVE_FILTERS})}"
                if not q.before
                else "/runs/stream?runs=none"  # an older page does not grow
            ),
            runs=[r.to_json() for r in runs],
            f=given,
            problem=problem,
            states=["", *RunState.__members__.values()],
            triggers=["", *Trigger.__members__.values()],
            live_filters={}
            if q.before
            else {k: base.get(k, "") for k in ("job", "state", "trigger")},
            newest_url=f"/runs?{urlencode(base)}",
            older_url=f"/runs?{urlencode(base | {'before': older})}" if older else None,
            scanned_to=scanned_to,
            scan=f"{SCAN:,}",
        )

    @routes.get("/runs/{id}")
    async def run_page(request: web.Request) -> web.Response:
        run_id = request.match_info["id"]
        try:
            run = await console.call(request, "runs.get", {"id": run_id})
            logs = await console.call(request, "runs.logs", {"id": run_id})
        except AdminError as exc:
            if exc.code != "not_found":
                raise
            return render(
                console,
                request,
                "error.html",
                http_status=404,
                stream=None,
                title="No such run",
                message=exc.message,
            )
        fragment = request.query.get("fragment") == "1"
        return render(
            console,
            request,
            "run_body.html" if fragment else "run.html",
            stream=None if fragment else f"/runs/stream?{urlencode({'run': run_id})}",
            run=run,
            logs=logs,
            live=run["state"] in LIVE_STATES,
            timeline=timeline(run["attempts"]),
        )

    return routes


def timeline(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attempts grouped by target, in the order each target was first tried; the check
    phase (which runs before the targets exist) is a group of its own."""
    groups: dict[str, dict[str, Any]] = {}
    for a in attempts:
        if a["phase"] == "check":
            key, label = "check", "check phase"
        elif a["target"] is None:
            key, label = "null", "the job (no explicit target)"
        else:
            key = json.dumps(a["target"], sort_keys=True)
            label = f"target {json.dumps(a['target'], ensure_ascii=False)}"
        groups.setdefault(key, {"label": label, "attempts": []})["attempts"].append(a)
    return list(groups.values())
