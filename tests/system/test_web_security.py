"""The console's security (SPEC §7.3, issue 13) against a real daemon: login, sessions,
cross-site refusals, CSRF, escaping, read-only mode, wrong-token limits, headers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aiohttp

from tests.support.daemon import DaemonProcess
from tests.support.web import WebClient, web_daemon, web_token

JOBS = """
[[jobs]]
name = "quick"
schedule = "@yearly"
action = { type = "exec", argv = ["/bin/echo", "<script>alert('out')</script>"] }
"""
PAGES = ["/", "/jobs", "/jobs/quick", "/runs", "/runs/0123", "/events", "/dlq", "/limits",
         "/cron?schedule=%40daily", "/no/such/page"]  # fmt: skip
STREAMS = ["/runs/stream", "/events/stream"]
FORMS = ["/jobs/quick/trigger", "/jobs/quick/pause", "/dlq/purge", "/events/replay"]


async def test_no_session_means_login_or_401_everywhere(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Every page (and unknown path) redirects to /login; the API and streams answer 401;
    a form post without a session changes nothing."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        for path in PAGES:
            async with w.http.get(w.base + path, allow_redirects=False) as resp:
                assert resp.status == 303, path
                assert resp.headers["Location"].startswith("/login?next="), path
        for path in STREAMS:
            async with w.http.get(w.base + path) as resp:
                assert resp.status == 401, path
        for cmd, method in (("status", "GET"), ("jobs.pause", "POST"), ("", "GET")):
            status, body = await w.api(cmd, {"name": "quick"}, method=method, token=None)
            assert status == 401 and body["error"]["code"] == "unauthorized"
        for path in FORMS:
            async with w.http.post(w.base + path, data={"csrf": "x"}, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].startswith("/login")
        status, login = await w.page("/login")
        assert status == 200 and "web-login" in login
    assert (await d.call("jobs.get", {"name": "quick"}))["state"] == "enabled"


async def test_one_time_link_logs_in_once_with_a_strict_cookie(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. web.login gives a /login?token= link.  2. Opening it sets an HttpOnly, SameSite=Strict
    session cookie and redirects.  3. The same link again is refused.  4. The session opens
    pages; logging out ends it. Result: a link is a one-time key."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        url = (await d.call("web.login"))["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/login\?token=[\w-]{20,}", url)
        async with w.http.get(url, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/"
            cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        status, _ = await w.page("/jobs")
        assert status == 200
        async with aiohttp.ClientSession() as other, other.get(url, allow_redirects=False) as r:
            assert r.status == 403 and "used up or expired" in await r.text()
            assert "Set-Cookie" not in r.headers
        status, html = await w.page("/")
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', html)
        assert csrf is not None
        w.csrf = csrf.group(1)
        resp = await w.form("/logout", {})
        assert resp.status == 303
        status, _ = await w.page("/jobs")
        assert status == 303


async def test_the_token_works_as_bearer_and_in_the_login_form(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """The token from state_dir/web.token opens the API (Bearer) and logs in via the form."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        status, body = await w.api("status", None, method="GET")
        assert status == 200 and body["ok"]
        resp = await w.form("/login", {"token": web_token(d), "next": "/jobs"})
        assert resp.status == 303 and resp.headers["Location"] == "/jobs"
        resp = await w.form("/login", {"token": web_token(d), "next": "//evil.example/x"})
        assert resp.status == 303 and resp.headers["Location"] == "/"  # no open redirect
        status, _ = await w.page("/jobs")
        assert status == 200


async def test_cross_site_and_csrf_less_changes_are_refused(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """With a valid session: a POST from another Origin, one a browser marks cross-site, and
    one without the CSRF token or with a wrong one (non-ASCII too) are refused (403) and
    change nothing; the same-origin form with its token works."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        evil = await w.form("/jobs/quick/pause", {}, headers={"Origin": "http://evil.example"})
        assert evil.status == 403
        for site in ("cross-site", "same-site"):
            marked = await w.form(
                "/jobs/quick/pause", {}, headers={"Origin": w.base, "Sec-Fetch-Site": site}
            )
            assert marked.status == 403, site
        no_token = await w.form("/jobs/quick/pause", {"csrf": ""})
        assert no_token.status == 403
        wrong = await w.form("/jobs/quick/pause", {"csrf": "forged"})
        assert wrong.status == 403
        for odd in ("fälscht", "\u2603" * 40):  # not ASCII: a 403 too, not a 500
            assert (await w.form("/jobs/quick/pause", {"csrf": odd})).status == 403
        status, _ = await w.api("status", None, method="GET", token="t\u00f6ken")
        assert status == 401
        assert (await d.call("jobs.get", {"name": "quick"}))["state"] == "enabled"
        status, body = await w.api(
            "jobs.pause", {"name": "quick"}, headers={"Origin": "http://evil.example"}
        )
        assert status == 403 and body["error"]["code"] == "forbidden"
        assert (await d.call("jobs.get", {"name": "quick"}))["state"] == "enabled"
        ok = await w.form("/jobs/quick/pause", {})
        assert ok.status == 303 and ok.headers["Location"] == "/jobs/quick"
        assert (await d.call("jobs.get", {"name": "quick"}))["state"] == "paused"
        (entry, *_) = await d.call("audit.list", {"job": "quick"})  # newest first
        assert (entry["cmd"], entry["via"], entry["outcome"]) == ("jobs.pause", "web", "ok")
        assert re.fullmatch(r"[0-9a-f]{8}", entry["user"])  # the session, by its short name
        status, page = await w.page("/jobs/quick")
        assert "Job quick is paused." in page


async def test_markup_in_names_payloads_and_output_is_shown_as_text(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """An event named <script>alert(1)</script>, payloads and captured output holding markup,
    and a search for it all render escaped; a job cannot even be named so."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    evil = "<script>alert(1)</script>"
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        status, body = await w.api(
            "jobs.add",
            {
                "job": {
                    "name": evil,
                    "schedule": "@daily",
                    "action": {"type": "exec", "argv": ["/bin/true"]},
                }
            },
        )
        assert status == 400 and body["error"]["code"] == "bad_request"
        await d.call("events.publish", {"name": evil, "payload": {"html": evil}})
        run = await d.call("jobs.trigger", {"name": "quick", "payload": {"x": evil}})
        await asyncio.to_thread(d.wait_run, run["id"])
        for path in ("/events", f"/runs/{run['id']}", "/jobs?q=" + evil, "/runs?job=" + evil,
                     "/cron?schedule=" + evil, "/login?next=" + evil):  # fmt: skip
            status, html = await w.page(path)
            assert status in (200, 403), path
            assert "<script>alert" not in html, path
            assert "&lt;script&gt;" in html or path.startswith("/login"), path
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js" defer>']


async def test_read_only_hides_and_refuses_every_write(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """read_only: pages show no buttons; forms and writing API commands are 403 and change
    nothing; reads still work."""
    d = web_daemon(daemon_factory, jobs=JOBS, read_only=True)
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        status, page = await w.page("/jobs/quick")
        assert status == 200 and "read-only" in page
        assert "/trigger" not in page and "/pause" not in page
        resp = await w.form("/jobs/quick/pause", {})
        assert resp.status == 403
        for cmd, args in (("jobs.pause", {"name": "quick"}), ("jobs.trigger", {"name": "quick"})):
            status, body = await w.api(cmd, args)
            assert status == 403 and body["error"]["code"] == "forbidden"
        status, body = await w.api("jobs.get", {"name": "quick"})
        assert status == 200 and body["result"]["state"] == "enabled"
        assert await d.call("runs.list", {}) == []


async def test_wrong_tokens_are_rate_limited(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Five wrong bearer tokens are 401; then the address must wait (429 with Retry-After),
    even with the right token; wrong login codes count the same."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        for _ in range(3):
            status, _ = await w.api("status", None, method="GET", token="wrong")
            assert status == 401
        for _ in range(2):
            status, _ = await w.page("/login?token=guessed")
            assert status == 403
        async with w.http.get(
            f"{w.base}/api/v1/status", headers={"Authorization": f"Bearer {web_token(d)}"}
        ) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        status, _ = await w.page("/login?token=guessed")
        assert status == 429


async def test_every_answer_carries_the_security_headers(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Pages, API answers, redirects and static files carry the strict CSP and friends;
    dynamic answers are not cached."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        for path in ("/", "/api/v1/status", "/static/app.js", "/jobs/nope", "/login"):
            async with w.http.get(w.base + path, allow_redirects=False) as resp:
                h = resp.headers
                assert "script-src 'self'" in h["Content-Security-Policy"], path
                assert "default-src 'none'" in h["Content-Security-Policy"], path
                assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
                assert h["Referrer-Policy"] == "same-origin"
                if not path.startswith("/static/"):
                    assert h["Cache-Control"] == "no-store", path
