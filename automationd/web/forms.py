"""The buttons: each form posts here, runs one command of THE command table as the session's
caller, and redirects back (post/redirect/get) with what happened as a flash message.

A form sent by the page's script (``Accept: application/json``) gets the command's answer as
JSON instead of a redirect, so the page stays where it is and its live stream shows the
run; with scripts off the same form works by redirect. The guard (web/guard.py) has already
checked origin, login, CSRF token and read-only mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from automationd.admin.protocol import parse_json
from automationd.errors import AdminError, StoreError
from automationd.web.api import STATUS
from automationd.web.console import Console, flash

FormArgs = Callable[[web.Request, dict[str, str], float], dict[str, Any]]


def _checked(form: dict[str, str], key: str) -> bool:
    return form.get(key, "") not in ("", "0", "false")


def _trigger_args(request: web.Request, form: dict[str, str], now: float) -> dict[str, Any]:
    args: dict[str, Any] = {"name": request.match_info["name"]}
    text = form.get("payload", "").strip()
    if text:  # the socket's JSON rules (too deep, NaN, lone surrogates): a RequestError
        args["payload"] = parse_json(text.encode(), "args.payload")
    if _checked(form, "dry_run"):
        args["dry_run"] = True
    return args


def _pick_args(request: web.Request, form: dict[str, str], now: float) -> dict[str, Any]:
    if form.get("id"):
        return {"id": form["id"]}
    if form.get("job"):
        return {"job": form["job"]}
    return {"all": _checked(form, "all")}


def _replay_args(request: web.Request, form: dict[str, str], now: float) -> dict[str, Any]:
    """The times go as typed ("1h" or RFC 3339): ``events.replay`` reads them itself, and its
    refusal (naming ``args.since``) is what the page shows."""
    args: dict[str, Any] = {k: form[k].strip() for k in ("since", "until", "name") if form.get(k)}
    if _checked(form, "force"):
        args["force"] = True
    return args


def _named(request: web.Request, form: dict[str, str], now: float) -> dict[str, Any]:
    return {"name": request.match_info["name"]}


def _run_id(request: web.Request, form: dict[str, str], now: float) -> dict[str, Any]:
    return {"id": request.match_info["id"]}


def _said(cmd: str, result: Any) -> str:
    """One line saying what a command did."""
    if cmd == "jobs.trigger":
        if "id" in result:
            return f"Triggered run {result['id']} ({result.get('state')})."
        return f"Dry run: {json.dumps(result, ensure_ascii=False)[:300]}"
    if cmd in ("jobs.pause", "jobs.resume"):
        return f"Job {result['name']} is {result['state']}."
    if cmd == "runs.cancel":
        return f"Run {result['id']} is {result['state']}."
    if cmd == "runs.retry":
        return f"Started retry run {result['id']}."
    if cmd == "dlq.retry":
        return f"Requeued {result['requeued']} dead letter(s)."
    if cmd == "dlq.purge":
        return f"Purged {result['purged']} dead letter(s)."
    if cmd == "events.replay":
        return f"Replayed {result['events']} event(s); {len(result['triggered'])} run(s) started."
    return "Done."


def _job_page(request: web.Request, result: Any) -> str:
    return f"/jobs/{request.match_info['name']}"


def _run_page(request: web.Request, result: Any) -> str:
    """The run acted on, or the new run a retry made."""
    return f"/runs/{result['id'] if result else request.match_info['id']}"


# (path, command, how the form becomes args, where to go back to)
ACTIONS: list[tuple[str, str, FormArgs, Callable[[web.Request, Any], str]]] = [
    ("/jobs/{name}/trigger", "jobs.trigger", _trigger_args, _job_page),
    ("/jobs/{name}/pause", "jobs.pause", _named, _job_page),
    ("/jobs/{name}/resume", "jobs.resume", _named, _job_page),
    ("/runs/{id}/cancel", "runs.cancel", _run_id, _run_page),
    ("/runs/{id}/retry", "runs.retry", _run_id, _run_page),
    ("/dlq/retry", "dlq.retry", _pick_args, lambda r, _: "/dlq"),
    ("/dlq/purge", "dlq.purge", _pick_args, lambda r, _: "/dlq"),
    ("/events/replay", "events.replay", _replay_args, lambda r, _: "/events"),
]


def make_forms(console: Console) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def action(cmd: str, to_args: FormArgs, back: Callable[[web.Request, Any], str]) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            wants_json = "application/json" in request.headers.get("Accept", "")
            result: Any = None
            try:
                args = to_args(request, form, console.clock.time())
                result = await console.call(request, cmd, args)
            except (AdminError, StoreError) as exc:
                code = exc.code if isinstance(exc, AdminError) else "unavailable"
                message = exc.message if isinstance(exc, AdminError) else str(exc)
                if wants_json:
                    body = {"ok": False, "error": {"code": code, "message": message}}
                    return web.json_response(body, status=STATUS.get(code, 500))
                flash(request, "error", f"{cmd} refused ({code}): {message}")
                raise web.HTTPSeeOther(back(request, None)) from None
            said = _said(cmd, result)
            if wants_json:
                return web.json_response({"ok": True, "result": result, "message": said})
            flash(request, "ok", said)
            raise web.HTTPSeeOther(back(request, result))

        return handle

    for path, cmd, to_args, back in ACTIONS:
        routes.post(path)(action(cmd, to_args, back))
    return routes
