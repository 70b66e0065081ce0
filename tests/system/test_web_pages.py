"""The console's pages and live streams against a real daemon (server side; the browser
tests in tests/browser drive the same pages through Chromium)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.daemon import DaemonProcess
from tests.support.web import WebClient, web_daemon

JOBS = """
[[jobs]]
name = "quick"
schedule = "@yearly"
action = { type = "exec", argv = ["/bin/sh", "-c", "echo quick-output-line"] }

[[jobs]]
name = "fails"
schedule = "@yearly"
retries = 0
action = { type = "exec", argv = ["/bin/sh", "-c", "echo broken >&2; exit 3"] }

[[jobs]]
name = "nightly"
schedule = "30 2 * * *"
timezone = "Europe/Berlin"
action = { type = "exec", argv = ["/bin/true"] }

[[jobs]]
name = "listener"
on = "demo.*"
action = { type = "exec", argv = ["/bin/echo", "heard"] }
"""
ENDED = ("succeeded", "partial", "failed", "skipped", "cancelled")


async def sse_events(resp: aiohttp.ClientResponse) -> Any:
    """Yield (id, event, data) for each server-sent event of an open stream."""
    fields: dict[str, str] = {}
    while True:
        line = (await resp.content.readline()).decode()
        if not line:
            return
        line = line.rstrip("\n")
        if line == "":
            if "event" in fields:
                yield fields.get("id"), fields["event"], json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":") and ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = value


async def wait_for(
    resp: aiohttp.ClientResponse, want: Callable[[str, Any], bool]
) -> tuple[str | None, str, Any]:
    async for seq, event, data in sse_events(resp):
        if want(event, data):
            return seq, event, data
    raise AssertionError("stream ended")


async def test_every_page_renders_with_its_render_time(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Every page answers 200 for a session, says its render time (Server-Timing), and shows
    its data: job names, the schedule in words, a run's captured output, limits, events."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    run = await d.call("jobs.trigger", {"name": "quick"})
    await asyncio.to_thread(d.wait_run, run["id"], ENDED)
    await d.call("events.publish", {"name": "demo.hello", "payload": {"who": "world"}})
    expect = {
        "/": ["Uptime", "Dead letters"],
        "/jobs": ["quick", "nightly", "every day at 02:30 Europe/Berlin"],
        "/jobs/nightly": ["Next fires", "Europe/Berlin", "every day at 02:30"],
        "/runs": [run["id"]],
        f"/runs/{run['id']}": ["quick-output-line", "succeeded", "perform"],
        "/events": ["demo.hello", "world"],
        "/dlq": ["Dead-letter queue"],
        "/limits": ["Rate limits", "Circuit breakers"],
        "/cron?schedule=0+9+*+*+1-5&tz=UTC": ["every Monday to Friday at 09:00 UTC"],
    }
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        for path, texts in expect.items():
            async with w.http.get(w.base + path, allow_redirects=False) as resp:
                html = await resp.text()
                assert resp.status == 200, path
                assert re.fullmatch(r"app;dur=\d+\.\d\d", resp.headers["Server-Timing"]), path
            for text in texts:
                assert text in html, (path, text)
        status, html = await w.page("/jobs/none-such")
        assert status == 404 and "There is no job named" in html
        status, html = await w.page("/runs/" + "0" * 32)
        assert status == 404 and "no run with id" in html
        status, html = await w.page("/cron?schedule=61+*+*+*+*&tz=UTC")
        assert status == 200 and "Not valid" in html and "minute" in html


async def test_jobs_page_filters_searches_and_pages(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """120 jobs: 50 per page in config order; a name search and a state filter narrow the
    list and the count."""
    jobs = "".join(
        f'[[jobs]]\nname = "job-{i:03d}"\nschedule = "@daily"\n'
        'action = { type = "exec", argv = ["/bin/true"] }\n'
        for i in range(120)
    )
    d = web_daemon(daemon_factory, jobs=jobs)
    await d.call("jobs.pause", {"name": "job-007"})
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        status, html = await w.page("/jobs?page=3")
        names = re.findall(r'data-job="(job-\d+)"', html)
        assert status == 200 and names == [f"job-{i:03d}" for i in range(100, 120)]
        assert "120 jobs" in html and "page 3 of 3" in html
        status, html = await w.page("/jobs?q=job-01")
        assert re.findall(r'data-job="(job-\d+)"', html) == [f"job-01{i}" for i in range(10)]
        status, html = await w.page("/jobs?state=paused")
        assert re.findall(r'data-job="(job-\d+)"', html) == ["job-007"] and "1 job match" in html


async def test_runs_page_filters_and_keyset_pages(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """55 runs of one job: the first page shows the newest 50 and links on by id; the next
    page shows the 5 oldest. Filters by job, state and trigger show only matching runs."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    runs = []
    for _ in range(55):
        runs.append(await d.call("jobs.trigger", {"name": "quick"}))
    failed = await d.call("jobs.trigger", {"name": "fails"})
    for r in (runs[-1], failed):
        await asyncio.to_thread(d.wait_run, r["id"], ENDED)
    newest_first = [r["id"] for r in reversed(runs)]
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        status, html = await w.page("/runs?job=quick")
        shown = re.findall(r'id="run-([0-9a-f]+)"', html)
        assert shown == newest_first[:50]
        older = re.search(r'href="(/runs\?[^"]+)" rel="next"', html)
        assert older is not None
        status, html = await w.page(older.group(1).replace("&amp;", "&"))
        assert re.findall(r'id="run-([0-9a-f]+)"', html) == newest_first[50:]
        assert 'rel="next"' not in html
        status, html = await w.page("/runs?state=failed")
        assert re.findall(r'id="run-([0-9a-f]+)"', html) == [failed["id"]]
        status, html = await w.page("/runs?trigger=manual&job=fails")
        assert re.findall(r'id="run-([0-9a-f]+)"', html) == [failed["id"]]
        status, html = await w.page("/runs?trigger=schedule")
        assert status == 200 and re.findall(r'id="run-([0-9a-f]+)"', html) == []
        status, html = await w.page("/runs?state=bogus&since=yesterday")
        assert status == 200
        assert "args.state: expected one of" in html or "args.since: expected" in html


async def test_run_stream_sends_changes_and_resumes_by_last_event_id(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Open /runs/stream, trigger a run: its change arrives (up to succeeded).
    2. Close; trigger another while away.  3. Reconnect with Last-Event-ID: the missed change
    arrives.  4. A Last-Event-ID from before gets ``reload``. Result: no silent gaps."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        async with w.http.get(w.base + "/runs/stream") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            first = await d.call("jobs.trigger", {"name": "quick"})
            seq, _, _ = await wait_for(
                resp,
                lambda e, data: (
                    e == "runs"
                    and any(
                        r["id"] == first["id"] and r["state"] == "succeeded" for r in data["runs"]
                    )
                ),
            )
        assert seq is not None
        second = await d.call("jobs.trigger", {"name": "quick"})
        await asyncio.to_thread(d.wait_run, second["id"], ENDED)
        async with w.http.get(w.base + "/runs/stream", headers={"Last-Event-ID": seq}) as resp:
            _, event, _data = await wait_for(
                resp,
                lambda e, data: (
                    e == "reload"
                    or (e == "runs" and any(r["id"] == second["id"] for r in data["runs"]))
                ),
            )
            assert event == "runs"
        async with w.http.get(w.base + "/runs/stream", headers={"Last-Event-ID": "1"}) as resp:
            _, event, _ = await wait_for(resp, lambda e, data: e in ("reload", "runs"))
            assert event == "reload"


async def test_events_stream_filters_by_glob(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """/events/stream?name=demo.* delivers demo.x within a second and never other.y."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        async with w.http.get(w.base + "/events/stream?name=demo.*") as resp:
            await wait_for(resp, lambda e, data: e == "counters")
            await d.call("events.publish", {"name": "other.y"})
            published = await d.call("events.publish", {"name": "demo.x", "payload": {"n": 1}})
            async with asyncio.timeout(1.5):
                _, _, data = await wait_for(resp, lambda e, data: e == "events")
        assert [e["name"] for e in data["events"]] == ["demo.x"]
        assert data["events"][0]["id"] == published["id"]
        assert json.loads(data["events"][0]["payload"]) == {"n": 1}


async def test_dead_letters_grouped_and_retried_from_the_page(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Failed runs show up grouped by job and kind with their count; the retry form of one
    entry requeues it (flash says so) and a purge of the job's empties the queue."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    for _ in range(2):
        run = await d.call("jobs.trigger", {"name": "fails"})
        await asyncio.to_thread(d.wait_run, run["id"], ENDED)
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        status, html = await w.page("/dlq")
        assert re.search(r"fails</a></td><td>fatal</td><td>2</td>", html), html
        entry = (await d.call("dlq.list", {}))[0]["id"]
        resp = await w.form("/dlq/retry", {"id": entry})
        assert resp.status == 303 and resp.headers["Location"] == "/dlq"
        status, html = await w.page("/dlq")
        assert status == 200 and "Requeued 1 dead letter(s)." in html
        resp = await w.form("/dlq/purge", {"job": "fails"})
        _status, html = await w.page("/dlq")
        assert "Purged" in html
    for r in await d.call("runs.list", {"job": "fails"}):
        await asyncio.to_thread(d.wait_run, r["id"], ENDED)
    await d.call("dlq.purge", {"all": True})
    assert await d.call("dlq.list", {}) == []


async def test_the_replay_form_replays_and_shows_what_was_wrong(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """The events page's replay form hands "1h" or RFC 3339 to events.replay as typed: a
    window replays (the flash says how many events and runs, the listener's among them); a
    time the command refuses shows its own message on the page, as does a name filter that
    events.list would refuse."""
    d = web_daemon(daemon_factory, jobs=JOBS)
    await d.call("events.publish", {"name": "demo.replayed"})
    async with asyncio.timeout(30), WebClient(d) as w:
        await w.login()
        resp = await w.form("/events/replay", {"since": "1h", "until": "2999-01-01T00:00:00Z"})
        assert resp.status == 303 and resp.headers["Location"] == "/events"
        _status, html = await w.page("/events")
        assert re.search(r"Replayed [1-9]\d* event\(s\); [1-9]\d* run\(s\) started", html)
        await w.form("/events/replay", {"since": "yesterday"})
        _status, html = await w.page("/events")
        assert "events.replay refused (bad_request): args.since: expected" in html
        status, html = await w.page("/events?name=" + "x" * 300)  # events.list's own rule
        assert status == 200 and "args.name: longer than 256 characters" in html
