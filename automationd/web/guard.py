"""The console's door: who is asking, whether a change may come from where it comes from,
and the headers every answer carries.

Rules (checked in this order, for every request but ``/static/`` and the login page):
1. A state-changing request (any method but GET/HEAD/OPTIONS) must come from this origin:
   a browser's ``Sec-Fetch-Site`` must be ``same-origin`` (or ``none``: typed by the user);
   without it, an ``Origin`` header must be this server's own (as Go's CrossOriginProtection
   and Sidekiq 8.1 do). Clients that send neither (curl, scripts) are not browsers and
   pass. Refused: 403.
2. Authentication: ``Authorization: Bearer TOKEN`` (the API's way), else the session cookie.
   A wrong token counts against the sender (web/auth.py), which then waits (429). Nobody:
   the API and the streams answer 401, a page redirects to ``/login``.
3. A change made with the session cookie also needs the session's CSRF token (a form's
   ``csrf`` field, or an ``X-CSRF-Token`` header from the page's script): the cookie alone
   never suffices, even from this origin. A bearer token is not ambient, so needs none.
4. ``read_only``: every form action is refused (403); the API refuses commands that write.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from automationd.caller import Caller, Via
from automationd.web.auth import COOKIE, Session
from automationd.web.console import CALLER_KEY, SESSION_KEY, Console

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_LOGIN = "/login"  # needs no login (the login page checks its own tokens), nor do static files
_ANSWER_401 = ("/api/", "/runs/stream", "/events/stream")


def same_origin(request: web.Request) -> bool:
    """Rule 1: True unless a browser says the request comes from another site.

    ``Sec-Fetch-Site`` is set by the browser itself (page scripts cannot), so when present it
    decides alone; only older browsers without it are judged by ``Origin`` (which some send
    as ``null`` for a same-origin form, depending on the referrer policy)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def refuse(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """An error answer in the request's language: JSON for the API, text for the rest."""
    if is_api(request) or request.path.endswith("/stream"):
        return web.json_response(
            {"ok": False, "error": {"code": code, "message": message}}, status=status
        )
    return web.Response(status=status, text=f"{status} {code}: {message}\n")


def make_guard(console: Console) -> Middleware:
    auth = console.auth

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        unsafe = request.method not in _SAFE
        if unsafe and not same_origin(request):
            return refuse(request, 403, "forbidden", "cross-site request refused")
        if path == _LOGIN or path.startswith("/static/"):
            return await handler(request)
        remote = request.remote or "?"
        session: Session | None = None
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            wait = auth.wait_for(remote)
            if wait > 0:
                answer = refuse(request, 429, "forbidden", "too many wrong tokens; wait")
                answer.headers["Retry-After"] = str(math.ceil(wait))
                return answer
            if scheme.lower() != "bearer" or not auth.token_ok(value.strip()):
                auth.wrong(remote, "bearer")
                return _unauthorized(request, "wrong token")
            caller = Caller(via=Via.WEB, session="token", remote=remote)
        else:
            session = auth.session(request.cookies.get(COOKIE))
            if session is None:
                if path.startswith(_ANSWER_401):
                    return _unauthorized(request, "log in first (automationctl web-login)")
                target = request.path_qs if request.method == "GET" else "/"
                raise web.HTTPSeeOther(f"/login?next={quote(target, safe='/')}")
            caller = Caller(via=Via.WEB, session=session.name, remote=remote)
        if unsafe and session is not None and not await _csrf_ok(request, session):
            return refuse(request, 403, "forbidden", "missing or wrong CSRF token; reload")
        if unsafe and console.read_only and not is_api(request) and path != "/logout":
            return refuse(request, 403, "forbidden", "the web console is read-only")
        request[CALLER_KEY] = caller
        request[SESSION_KEY] = session
        started = console.clock.monotonic()
        response = await handler(request)
        if not response.prepared:  # (a stream's headers are long gone)
            took = (console.clock.monotonic() - started) * 1000
            response.headers["Server-Timing"] = f"app;dur={took:.2f}"
        return response

    return guard


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    presented = request.headers.get("X-CSRF-Token")
    if presented is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        value = (await request.post()).get("csrf")
        presented = value if isinstance(value, str) else None
    # bytes: compare_digest raises TypeError on a str that is not ASCII (a 500, not a 403)
    return presented is not None and hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), session.csrf.encode()
    )


def _unauthorized(request: web.Request, message: str) -> web.Response:
    answer = refuse(request, 401, "unauthorized", message)
    answer.headers["WWW-Authenticate"] = 'Bearer realm="automationd"'
    return answer


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer: no framing, no sniffing, no referrer, the CSP; dynamic ones not cached."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")  # nothing leaves for other sites
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
