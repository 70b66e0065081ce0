"""What every page handler needs (``Console``), and turning a template into a response.

Rendering rules: Jinja2 with autoescape on and undefined names an error, so a job name, a
payload or a log line is always text, never markup. Templates carry no script and no
inline style (the Content-Security-Policy forbids both); behaviour lives in
``static/app.js``. Every answer says how long the server took to make it (``Server-Timing:
app;dur=MS``, set by web/guard.py), which is also what the render bench measures.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from automationd.admin.command import CommandTable, invoke
from automationd.caller import Caller
from automationd.clock import Clock
from automationd.engine.jobs import JobTable
from automationd.store.api import Store
from automationd.web.auth import Session, WebAuth
from automationd.web.feed import Feed

if TYPE_CHECKING:
    import jinja2

SESSION_KEY = "session"  # request[...]: the Session, for cookie logins
CALLER_KEY = "caller"  # request[...]: the Caller every command runs as


@dataclass(frozen=True, slots=True, kw_only=True)
class Console:
    listen: str  # [web] listen
    table: CommandTable
    jobs: JobTable
    store: Store
    feed: Feed
    auth: WebAuth
    clock: Clock
    read_only: bool
    templates: jinja2.Environment
    counters: Callable[[], dict[str, Any]]  # the live numbers (workers, queue, dead letters)

    async def call(self, request: web.Request, cmd: str, args: Mapping[str, Any]) -> Any:
        """Run one command of THE command table as this request's caller."""
        caller: Caller = request[CALLER_KEY]
        return await invoke(self.table[cmd], dict(args), caller)


def make_templates(now: Callable[[], float]) -> jinja2.Environment:
    import jinja2  # here: a daemon without the console never pays for importing it (30 ms)

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("automationd.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = ts
    env.filters["ago"] = lambda t: ago(t, now())
    env.filters["dur"] = duration
    env.filters["pretty"] = pretty
    env.filters["compact"] = compact
    env.filters["epoch"] = epoch
    for name in env.list_templates():  # compiled now, not on some visitor's first request
        env.get_template(name)
    return env


def render(
    console: Console,
    request: web.Request,
    template: str,
    *,
    http_status: int = 200,
    stream: str | None = "/runs/stream",
    **context: Any,
) -> web.Response:
    """The page ``template`` with the context every page has (session, flash, live stream)."""
    session: Session | None = request.get(SESSION_KEY)
    flash: list[tuple[str, str]] = []
    if session is not None:
        flash, session.flash = session.flash, []
    after = console.feed.keep_watching() if stream else None
    text = console.templates.get_template(template).render(
        session=session,
        csrf=session.csrf if session is not None else "",
        read_only=console.read_only,
        flash=flash,
        stream=stream,
        after=after,
        path=request.path,
        **context,
    )
    return web.Response(text=text, status=http_status, content_type="text/html")


def flash(request: web.Request, kind: str, text: str) -> None:
    """A message for the next page this session sees (after a form's redirect)."""
    session: Session | None = request.get(SESSION_KEY)
    if session is not None:
        session.flash.append((kind, text))


# -- filters ----------------------------------------------------------------------------------


def epoch(value: Any) -> float | None:
    """An epoch number, or an RFC 3339 string as the API gives it, as epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ts(value: Any, zone: dt.tzinfo | None = None) -> str:
    """``2026-01-31 12:00:05Z`` (or local with its offset when ``zone`` is given)."""
    t = epoch(value)
    if t is None:
        return "\u2013"
    when = dt.datetime.fromtimestamp(t, zone or dt.UTC)
    if zone is None:
        return when.strftime("%Y-%m-%d %H:%M:%SZ")
    return when.strftime("%Y-%m-%d %H:%M:%S %Z (%z)")


def ago(value: Any, now: float) -> str:
    """``3m ago`` / ``in 5s``: how far ``value`` is from now, roughly."""
    t = epoch(value)
    if t is None:
        return ""
    delta = t - now
    text = duration(abs(delta), coarse=True)
    return f"in {text}" if delta > 0 else f"{text} ago"


def duration(seconds: Any, coarse: bool = False) -> str:
    if seconds is None or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "\u2013"
    s = float(seconds)
    if s < 1 and not coarse:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.0f}s" if coarse else f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s" if not coarse else f"{int(s // 60)}m"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600)}h"


def compact(value: Any) -> str:
    """JSON on one line, as readable text (autoescape makes it safe in the page)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def pretty(value: Any) -> str:
    """JSON for people: indented, non-ASCII as is, keys in their order."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
