"""The overview, events, dead letters, limits and cron-preview pages, and logging in and out.

Pages read through THE command table (``Console.call``) wherever a command answers what
the page shows, so the console, the socket and the API can never disagree; they read the
store directly only for what no command gives (the dead letters grouped, a page of
events below an id, the last failures).
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from automationd.admin.args import opt_glob, opt_id
from automationd.core.schedule import parse_schedule
from automationd.core.words import schedule_words
from automationd.store.api import RunQuery
from automationd.web.auth import COOKIE, SESSION_IDLE
from automationd.web.console import SESSION_KEY, Console, render
from automationd.web.job_pages import fire_rows
from automationd.web.run_pages import read_filters

EVENTS_PER_PAGE = 50
DLQ_GROUPS = 50  # the largest (job, kind) groups shown
DLQ_ENTRIES = 50  # the newest entries shown
COUNTERS_ONLY = "/runs/stream?runs=none"
DLQ_WINDOW = 2000  # a bigger queue is grouped over its newest entries (and says so)
FAILURES = 10


@functools.cache
def _zones() -> list[str]:
    """Zone names for the cron page's list (read from the tz database on first use)."""
    return sorted(zoneinfo.available_timezones())


def make_pages(console: Console) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/")
    async def overview(request: web.Request) -> web.Response:
        status = await console.call(request, "status", {})
        breakers = await console.call(request, "breakers.list", {})
        limits = await console.call(request, "limits.list", {})
        failed = await console.store.runs(RunQuery(state="failed", limit=FAILURES))
        partial = await console.store.runs(RunQuery(state="partial", limit=FAILURES))
        failures = sorted([*failed, *partial], key=lambda r: r.id, reverse=True)[:FAILURES]
        store = status.get("store") or {}
        return render(
            console,
            request,
            "overview.html",
            stream="/runs/stream?state=failed,partial",  # its live table: the failures
            status=status,
            store_ok=store.get("healthy", True),
            store_reason=store.get("reason") or "",
            open_breakers=[b["service"] for b in breakers if b["state"] != "closed"],
            paused_services=[s["service"] for s in limits if s.get("paused_until")],
            failures=[r.to_json() for r in failures],
        )

    @routes.get("/events")
    async def events(request: web.Request) -> web.Response:
        given = {k: request.query.get(k, "").strip() for k in ("name", "before")}
        read, problem = read_filters(given, {"name": opt_glob, "before": opt_id})
        name, before = read["name"], read["before"]
        found = await console.store.events(
            since=None,
            until=None,
            limit=EVENTS_PER_PAGE + 1,
            newest_first=True,
            name=name,
            before=before,
        )
        base = {"name": name} if name else {}
        older = found[EVENTS_PER_PAGE - 1].id if len(found) > EVENTS_PER_PAGE else None
        return render(
            console,
            request,
            "events.html",
            stream="/events/stream" + (f"?{urlencode({'name': name})}" if name else ""),
            events=[e.to_json() for e in found[:EVENTS_PER_PAGE]],
            name=name,
            before=before,
            problem=problem,
            newest_url=f"/events?{urlencode(base)}",
            older_url=f"/events?{urlencode(base | {'before': older})}" if older else None,
        )

    @routes.get("/dlq")
    async def dlq(request: web.Request) -> web.Response:
        job = request.query.get("job") or None
        args: dict[str, Any] = {"limit": DLQ_ENTRIES} | ({"job": job} if job else {})
        entries = await console.call(request, "dlq.list", args)
        size = int(console.counters()["dlq_size"])
        window = DLQ_WINDOW if size > DLQ_WINDOW else None
        return render(
            console,
            request,
            "dlq.html",
            stream=COUNTERS_ONLY,
            groups=(await console.store.dlq_summary(newest=window))[:DLQ_GROUPS],
            window=window,
            entries=entries,
            job=job,
            size=size,
        )

    @routes.get("/limits")
    async def limits(request: web.Request) -> web.Response:
        return render(
            console,
            request,
            "limits.html",
            stream=COUNTERS_ONLY,
            limits=await console.call(request, "limits.list", {}),
            breakers=await console.call(request, "breakers.list", {}),
        )

    @routes.get("/cron")
    async def cron(request: web.Request) -> web.Response:
        text = request.query.get("schedule", "").strip()
        tz = request.query.get("tz", "").strip() or "UTC"
        problem, words, fires = "", "", []
        if text:
            try:
                zone = zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                problem = f"unknown time zone {tz!r}"
            else:
                try:
                    schedule = parse_schedule(text, zone)
                except ValueError as exc:
                    problem = str(exc)
                else:
                    words = schedule_words(text, tz)
                    fires = fire_rows(schedule, console.clock.time(), tz)
        return render(
            console,
            request,
            "cron.html",
            stream=None,
            schedule=text,
            tz=tz,
            zones=_zones(),
            problem=problem,
            words=words,
            fires=fires,
        )

    # -- logging in and out -------------------------------------------------------------
    @routes.get("/login")
    async def login_page(request: web.Request) -> web.StreamResponse:
        code = request.query.get("token")
        target = local_target(request.query.get("next", "/"))
        if code is None:
            return _login_form(console, request, target, "")
        remote = request.remote or "?"
        if console.auth.wait_for(remote) > 0:
            return _login_form(console, request, target, "Too many wrong tokens: wait.", 429)
        if not console.auth.redeem(code):
            console.auth.wrong(remote, "login code")
            problem = "This login link is used up or expired: run automationctl web-login again."
            return _login_form(console, request, target, problem, 403)
        return _logged_in(console, request, target)

    @routes.post("/login")
    async def login_form(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = local_target(str(form.get("next", "/")))
        remote = request.remote or "?"
        if console.auth.wait_for(remote) > 0:
            return _login_form(console, request, target, "Too many wrong tokens: wait.", 429)
        if not console.auth.token_ok(str(form.get("token", "")).strip()):
            console.auth.wrong(remote, "login form")
            return _login_form(console, request, target, "Wrong token.", 403)
        return _logged_in(console, request, target)

    @routes.post("/logout")
    async def logout(request: web.Request) -> web.StreamResponse:
        session = request.get(SESSION_KEY)
        if session is not None:
            console.auth.end_session(session.id)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    return routes


def local_target(target: str) -> str:
    """Only a path on this server may follow a login (no open redirect).

    Control characters are refused as well as ``//`` and backslashes: yarl drops a tab or a
    newline when it builds the Location, so ``/<TAB>/evil.com`` would leave as ``//evil.com``."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(c < " " or c == "\x7f" for c in target)
    ):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _login_form(
    console: Console, request: web.Request, target: str, problem: str, status: int = 200
) -> web.Response:
    return render(
        console,
        request,
        "login.html",
        http_status=status,
        stream=None,
        next=target,
        problem=problem,
    )


def _logged_in(console: Console, request: web.Request, target: str) -> web.StreamResponse:
    session = console.auth.new_session(request.remote or "?")
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE,
        session.id,
        path="/",
        httponly=True,
        samesite="Strict",
        max_age=int(SESSION_IDLE),
        secure=request.secure,
    )
    return response
