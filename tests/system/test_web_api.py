"""The HTTP API (SPEC §7.3) against a real daemon: every socket command through /api/v1 gives
the same answer as over the socket; methods, arguments and statuses follow the SPEC."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from automationd.admin.protocol import encode_request
from tests.support.admin_client import AdminClient
from tests.support.daemon import DaemonProcess
from tests.support.web import WebClient, web_daemon

JOBS = """
[[jobs]]
name = "quick"
schedule = "@yearly"
action = { type = "exec", argv = ["/bin/echo", "hi"] }

[[jobs]]
name = "p1"
schedule = "@yearly"
action = { type = "exec", argv = ["/bin/echo", "p"] }

[[jobs]]
name = "p2"
schedule = "@yearly"
action = { type = "exec", argv = ["/bin/echo", "p"] }

[[jobs]]
name = "fails"
schedule = "@yearly"
retries = 0
service = "api"
action = { type = "exec", argv = ["/bin/sh", "-c", "echo boom >&2; exit 3"] }

[[jobs]]
name = "slow"
schedule = "@yearly"
overlap = "allow"
action = { type = "exec", argv = ["/bin/sleep", "30"] }

[[jobs]]
name = "listener"
on = "demo.*"
action = { type = "exec", argv = ["/bin/echo", "heard"] }
"""
SERVICES = """
[services.api]
rate = "100/s"
burst = 10
breaker = { failures = 50, reset = "60s" }
"""
RUN_END = ("succeeded", "partial", "failed", "skipped", "cancelled")
STATUS = {
    "bad_request": 400,
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unavailable": 503,
}


@pytest.fixture
def daemon(daemon_factory: Callable[..., DaemonProcess]) -> Iterator[DaemonProcess]:
    yield web_daemon(daemon_factory, jobs=JOBS, services=SERVICES)


async def socket_answer(d: DaemonProcess, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """The socket's whole answer (``ok`` and ``result`` or ``error``), without its id."""
    async with AdminClient(d.socket, timeout=10) as c:
        resp = await c.request_raw(encode_request(1, cmd, args))
    resp.pop("id", None)
    return resp


# clock-driven numbers; and who added a job (``owner`` is the socket peer's uid, none for
# the web, which has no uid: by design, not a difference in the command)
_VOLATILE = {"uptime_s", "tokens", "owner"}
_ID = re.compile(r"^[0-9a-f]{32}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def norm(value: Any, names: dict[str, str] | None = None) -> Any:
    """Ids, times and clock-driven numbers replaced by placeholders; ``names`` renamed."""
    names = names or {}
    if isinstance(value, dict):
        return {k: ("<n>" if k in _VOLATILE else norm(v, names)) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v, names) for v in value]
    if isinstance(value, str):
        if _ID.match(value):
            return "<id>"
        if _TIME.match(value):
            return "<time>"
        if "/login?token=" in value:
            return value.split("token=")[0] + "token=<code>"
        return names.get(value, value)
    return value


async def both(
    d: DaemonProcess,
    w: WebClient,
    cmd: str,
    socket_args: dict[str, Any],
    api_args: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The socket's answer and the API's (normalised), and the API's HTTP status."""
    via_socket = await socket_answer(d, cmd, socket_args)
    status, via_api = await w.api(cmd, api_args if api_args is not None else socket_args)
    return norm(via_socket), norm(via_api, names), status


async def test_every_command_answers_the_same_over_http(daemon: DaemonProcess) -> None:
    """1. List the command table through GET /api/v1.  2. For each command, call it over the
    socket and over HTTP in the same situation (a write on a twin object, or repeated where
    repeating is a no-op) and compare the answers (ids and times normalised).
    Result: every command of the table is covered and answers the same both ways."""
    d = daemon
    covered: set[str] = set()
    async with asyncio.timeout(90), WebClient(d) as w:
        status, listing = await w.api("", None, method="GET")
        assert status == 200 and listing["ok"]
        table = {c["cmd"]: c["writes"] for c in listing["result"]}

        async def same(
            cmd: str,
            socket_args: dict[str, Any],
            api_args: dict[str, Any] | None = None,
            names: dict[str, str] | None = None,
        ) -> dict[str, Any]:
            a, b, status = await both(d, w, cmd, socket_args, api_args, names)
            assert a == b, (cmd, a, b)
            assert status == (200 if a["ok"] else STATUS[a["error"]["code"]])
            covered.add(cmd)
            return a

        # runs to look at: one succeeded, two failed (two dead letters), one with a key
        quick = await d.call("jobs.trigger", {"name": "quick", "idempotency_key": "k1"})
        f1 = await d.call("jobs.trigger", {"name": "fails"})
        f2 = await d.call("jobs.trigger", {"name": "fails"})
        for run in (quick, f1, f2):
            await asyncio.to_thread(d.wait_run, run["id"], RUN_END)
        await same("status", {})
        await same("limits.list", {})
        await same("breakers.list", {})
        await same("jobs.list", {})
        await same("jobs.list", {"state": "paused"})
        await same("jobs.get", {"name": "quick"})
        await same("jobs.get", {"name": "nope"})
        await same("jobs.get", {})
        await same("runs.list", {"limit": 10})
        await same("runs.list", {"job": "fails", "state": "failed"})
        await same("runs.list", {"state": "bogus"})
        await same("runs.get", {"id": f1["id"]})
        await same("runs.logs", {"id": f1["id"]})
        await same("runs.get", {"id": "0" * 32})
        await same("dlq.list", {})
        await same("events.list", {"name": "run.*"})
        await same("reload", {})
        await same("web.login", {})
        # writes, on twins
        job = {
            "name": "add-a",
            "schedule": "@yearly",
            "action": {"type": "exec", "argv": ["/bin/true"]},
        }
        await same("jobs.add", {"job": job}, {"job": {**job, "name": "add-b"}}, {"add-b": "add-a"})
        await same("jobs.add", {"job": job})  # conflict both ways
        await same("jobs.remove", {"name": "add-a"}, {"name": "add-b"}, {"add-b": "add-a"})
        await same("jobs.pause", {"name": "p1"}, {"name": "p2"}, {"p2": "p1"})
        await same("jobs.resume", {"name": "p1"}, {"name": "p2"}, {"p2": "p1"})
        await same("jobs.trigger", {"name": "quick", "idempotency_key": "k1"})  # existing
        await same("jobs.trigger", {"name": "quick", "dry_run": True})
        await same("jobs.trigger", {"name": "nope"})
        fresh = await same("jobs.trigger", {"name": "slow"})
        assert fresh["ok"] and fresh["result"]["job"] == "slow"
        slow_runs = await d.call("runs.list", {"job": "slow"})
        assert len(slow_runs) == 2
        await same("runs.cancel", {"id": slow_runs[0]["id"]}, {"id": slow_runs[1]["id"]})
        await same("runs.cancel", {"id": quick["id"]})  # already ended: conflict
        await same("runs.retry", {"id": f1["id"]}, {"id": f2["id"]})
        # the retries took f1's and f2's dead letters; failing again, each leaves its own
        for r in await d.call("runs.list", {"job": "fails", "trigger": "retry"}):
            await asyncio.to_thread(d.wait_run, r["id"], RUN_END)
        dead = await d.call("dlq.list", {"job": "fails"})
        assert len(dead) >= 2
        await same("dlq.purge", {"id": dead[0]["id"]}, {"id": dead[1]["id"]})
        await same("dlq.retry", {"id": "nope"})
        await same("dlq.retry", {})
        await d.call("events.publish", {"name": "demo.x", "idempotency_key": "e1"})
        await same("events.publish", {"name": "demo.x", "idempotency_key": "e1"})  # existing
        await same("events.publish", {"name": "other.y"}, names={})  # fresh both ways
        window = {"since": "2000-01-01T00:00:00Z", "name": "demo.*"}
        await d.call("events.replay", window)
        await same("events.replay", window)  # replayed already: nothing new either way
        await same("events.replay", {})
        # commands this test has no case for (added since): the same refusal or answer for {}
        for cmd in sorted(set(table) - covered):
            await same(cmd, {})
        assert covered == set(table)


async def test_get_works_for_reads_and_keeps_names_as_strings(daemon: DaemonProcess) -> None:
    """GET /api/v1/CMD?ARG=… equals POST with the same args; a value is JSON only for an arg
    that takes one (``limit``), so ``?name=123`` names the job "123"."""
    async with asyncio.timeout(30), WebClient(daemon) as w:
        for _ in range(3):
            run = await daemon.call("jobs.trigger", {"name": "quick"})
            await asyncio.to_thread(daemon.wait_run, run["id"], RUN_END)
        s1, by_get = await w.api("runs.list", {"job": "quick", "limit": 2}, method="GET")
        s2, by_post = await w.api("runs.list", {"job": "quick", "limit": 2})
        assert s1 == s2 == 200 and by_get == by_post and len(by_get["result"]) == 2
        job = {"name": "123", "on": "x.y", "action": {"type": "exec", "argv": ["/bin/true"]}}
        await daemon.call("jobs.add", {"job": job})
        status, body = await w.api("jobs.get", {"name": "123"}, method="GET")
        assert status == 200 and body["result"]["name"] == "123"
        status, body = await w.api("runs.list", {"job": "123"}, method="GET")
        assert status == 200 and body["result"] == []
        status, body = await w.api("runs.list", {"limit": "many"}, method="GET")
        assert status == 400 and body["error"]["code"] == "bad_request"


async def test_methods_bodies_and_statuses(daemon: DaemonProcess) -> None:
    """A write by GET is 405 (Allow: POST); a body that is not a JSON object, or breaks the
    socket's JSON rules (too deep, NaN, a lone surrogate), is 400, as is such a form payload; an
    unknown command is 404; no token is 401; the answers are ``{ok, error}`` objects."""
    async with asyncio.timeout(30), WebClient(daemon) as w:
        async with w.http.get(
            f"{w.base}/api/v1/jobs.pause?name=p1",
            headers={
                "Authorization": f"Bearer {(daemon.base / 'state/web.token').read_text().strip()}"
            },
        ) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST"
            assert (await resp.json())["error"]["code"] == "bad_request"
        token = (daemon.base / "state/web.token").read_text().strip()
        deep = b'{"name": ' + b"[" * 65 + b"]" * 65 + b"}"
        bombs = (b'{"name": NaN}', b'{"name": "\\ud800"}', deep, b"[" * 100_000)
        for body in (b"[1, 2]", b"{not json", b'"text"', b"\xff", *bombs):
            async with w.http.post(
                f"{w.base}/api/v1/jobs.get", data=body, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["code"] == "bad_request"
        status, body = await w.api("no.such.command", {})
        assert status == 404 and body == {
            "ok": False,
            "error": {"code": "not_found", "message": "unknown command 'no.such.command'"},
        }
        status, body = await w.api("status", None, method="GET", token=None)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body = await w.api("status", None, method="GET")
        assert status == 200 and body["ok"] and body["result"]["jobs"]["total"] == 6
        await w.login()  # the trigger form's payload is held to the same rules
        browser = {"Origin": w.base, "Sec-Fetch-Site": "same-origin", "Accept": "application/json"}
        for payload in ("[" * 100_000, "NaN", '"\\ud800"'):
            resp = await w.form("/jobs/quick/trigger", {"payload": payload}, headers=browser)
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"


def test_norm_keeps_what_matters() -> None:
    """The comparison's normaliser hides ids and times only, not states or messages."""
    run = {"id": "0" * 31 + "a", "state": "failed", "created_at": "2026-01-01T00:00:00.000Z"}
    assert norm(copy.deepcopy(run)) == {"id": "<id>", "state": "failed", "created_at": "<time>"}
    assert norm({"state": "succeeded"}) != norm({"state": "failed"})
