"""The HTTP JSON API: ``POST /api/v1/CMD`` (and ``GET`` for commands that change nothing).

It serves THE command table (admin/commands.py), the one the admin socket serves: same
handlers, same argument checks, same answers ``{ok, result | error}``. Only the transport
differs:

- arguments: a POST's JSON body is the ``args`` object (an empty body is ``{}``); a GET's
  query parameters are the args, each value the string given (``name=123`` is the job
  "123") except for the args the command takes as JSON (``Command.json_args``: ``limit=5``
  is 5, ``payload={"a":1}`` an object). Bodies and JSON values are held to the socket's
  rules (admin/protocol.py ``parse_json``: nesting, finite numbers, no lone surrogates);
- a command that writes takes POST only (GET answers 405) and is refused (403) when the
  console is ``read_only``;
- the answer's HTTP status follows its error code (``STATUS``); the caller is the web
  session or the bearer token (caller.py), for the audit trail.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from automationd.admin.command import invoke
from automationd.admin.protocol import parse_json
from automationd.errors import AdminError, StoreError, bad_request
from automationd.web.console import CALLER_KEY, Console

log = structlog.get_logger("automationd.web")

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "internal": 500,
    "unavailable": 503,
}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def query_args(query: Any, json_args: frozenset[str]) -> dict[str, Any]:
    """GET parameters → args (see the module docstring); a repeated name keeps the last.
    ``bad_request`` (a ``RequestError``) when a JSON-valued one is not acceptable JSON."""
    args: dict[str, Any] = {}
    for key, text in query.items():
        args[key] = parse_json(text.encode(), f"args.{key}") if key in json_args else text
    return args


def answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=_dumps(body).encode(), content_type="application/json")


def error(code: str, message: str, status: int | None = None) -> web.Response:
    body = {"ok": False, "error": {"code": code, "message": message}}
    return answer(status or STATUS.get(code, 500), body)


def make_api(console: Console) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/api/v1/")
    @routes.get("/api/v1")
    async def listing(request: web.Request) -> web.Response:
        """The commands there are, and which change state (POST only)."""
        result = [{"cmd": c.name, "writes": c.writes} for c in console.table.values()]
        return answer(200, {"ok": True, "result": result})

    @routes.route("*", "/api/v1/{cmd}")
    async def api(request: web.Request) -> web.Response:
        name = request.match_info["cmd"]
        command = console.table.get(name)
        if command is None:
            return error("not_found", f"unknown command {name!r}")
        if request.method == "GET":
            if command.writes:
                response = error("bad_request", f"{name} changes state: use POST", 405)
                response.headers["Allow"] = "POST"
                return response
            try:
                args = query_args(request.query, command.json_args)
            except AdminError as exc:
                return error(exc.code, exc.message)
        elif request.method == "POST":
            if command.writes and console.read_only:
                return error("forbidden", "the web console is read-only")
            try:
                args = await _body_args(request)
            except AdminError as exc:
                return error(exc.code, exc.message)
        else:
            response = error("bad_request", f"method {request.method} not allowed", 405)
            response.headers["Allow"] = "GET, POST" if not command.writes else "POST"
            return response
        try:
            result = await invoke(command, args, request[CALLER_KEY])
        except AdminError as exc:
            return error(exc.code, exc.message)
        except StoreError as exc:
            return error("unavailable", str(exc))
        except Exception as exc:
            log.error(
                "web.api_internal_error",
                cmd=name,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
            )
            return error("internal", "internal error (see the daemon log)")
        return answer(200, {"ok": True, "result": result})

    return routes


async def _body_args(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    value = parse_json(raw, "args")
    if not isinstance(value, dict):
        raise bad_request("args: the body must be a JSON object of args")
    return value
