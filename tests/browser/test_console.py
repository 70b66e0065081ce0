"""The web console in a real headless Chromium (issue 13's acceptance): log in through the
one-time link, the demo jobs with their next fires, a trigger seen live to ``succeeded``
without a reload, its log, an event arriving live within a second, a dead letter retried
from the page; a screenshot of every page."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.support.daemon import DaemonProcess
from tests.support.web import web_address

ENDED = ("succeeded", "partial", "failed", "skipped", "cancelled")


def shot(page: Any, screens: Path, name: str) -> Path:
    path = screens / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_login_through_the_one_time_link(page: Any, demo: DaemonProcess, screens: Path) -> None:
    """The link from web-login lands on the overview, logged in; the same link in another
    browser is refused."""
    assert page.url.rstrip("/") == web_address(demo)
    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("#live").inner_text() in ("live", "")
    page.wait_for_selector("#live.on")  # the live stream is open
    shot(page, screens, "overview")
    other = page.context.browser.new_context()
    try:
        stranger = other.new_page()
        stranger.goto(page.url)  # a logged-out browser is sent to the login page
        assert "/login" in stranger.url
    finally:
        other.close()


def test_jobs_page_lists_the_demo_jobs_with_next_fires(page: Any, screens: Path) -> None:
    """The demo's jobs are listed; the scheduled ones show a next fire time."""
    page.click("nav >> text=Jobs")
    page.wait_for_selector("#jobs-table")
    rows = {
        r.get_attribute("data-job"): r.inner_text()
        for r in page.locator("#jobs-table tbody tr").all()
    }
    assert {"demo-heartbeat", "demo-on-event", "demo-fanout"} <= set(rows)
    for name in ("demo-heartbeat", "demo-fanout"):
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", rows[name]), rows[name]
    assert "every 30 seconds" in rows["demo-heartbeat"]
    assert "on demo.*" in rows["demo-on-event"]
    shot(page, screens, "jobs")
    page.click("text=demo-fanout")
    page.wait_for_selector("table.fires")
    assert page.locator("table.fires tbody tr").count() == 10
    shot(page, screens, "job")


def test_trigger_from_the_job_page_is_seen_live(
    page: Any, demo: DaemonProcess, screens: Path
) -> None:
    """1. Open a job's page and mark the window.  2. Trigger.  3. The run appears in the
    table and turns succeeded, the page never reloading.  4. Its page shows its log.
    Result: the run is followed live."""
    page.goto(web_address(demo) + "/jobs/demo-heartbeat")
    page.wait_for_selector("#live.on")
    page.evaluate("window.__stayed = 'yes'")
    before = set(page.locator("#runs-table tbody tr[data-run]").evaluate_all(
        "rows => rows.map(r => r.dataset.run)"))  # fmt: skip
    page.click("#trigger")
    page.wait_for_selector("#action-result:not([hidden])")
    assert "Triggered run" in page.locator("#action-result").inner_text()
    fresh = page.locator("#runs-table tbody tr.fresh").first
    run_id = fresh.get_attribute("data-run")
    assert run_id and run_id not in before
    page.wait_for_selector(f"#run-{run_id} .s-succeeded")
    assert page.evaluate("window.__stayed") == "yes"  # no reload happened
    shot(page, screens, "job-triggered")
    page.click(f"#run-{run_id} a")
    page.wait_for_selector("pre.logtext")
    assert "heartbeat from automationd" in page.locator("pre.logtext").first.inner_text()
    shot(page, screens, "run")


def test_an_event_published_over_the_socket_arrives_within_a_second(
    page: Any, demo: DaemonProcess, screens: Path
) -> None:
    """With the events page open, an event published over the socket shows within 1 s."""
    page.goto(web_address(demo) + "/events")
    page.wait_for_selector("#live.on")
    started = time.monotonic()
    event = demo.call_sync("events.publish", {"name": "demo.browser", "payload": {"x": "<b>"}})
    page.wait_for_selector(f"#event-{event['id']}", timeout=3_000)
    took = time.monotonic() - started
    assert took <= 1.0, f"event shown after {took:.2f}s"
    row = page.locator(f"#event-{event['id']}").inner_text()
    assert "demo.browser" in row and "<b>" in row  # markup shown as text
    shot(page, screens, "events")


def test_a_dead_letter_is_retried_from_the_page(
    page: Any, demo: DaemonProcess, screens: Path
) -> None:
    """A failed run's dead letter is listed; its retry button requeues it (a new run)."""
    job = {
        "name": "demo-fails",
        "on": "never.*",
        "retries": 0,
        "action": {"type": "exec", "argv": ["/bin/sh", "-c", "echo no >&2; exit 2"]},
    }
    demo.call_sync("jobs.add", {"job": job})
    run = demo.call_sync("jobs.trigger", {"name": "demo-fails"})
    demo.wait_run(run["id"], ENDED)
    (entry,) = demo.call_sync("dlq.list", {"job": "demo-fails"})
    page.goto(web_address(demo) + "/dlq")
    assert "demo-fails" in page.locator("table.dlq-groups").inner_text()
    shot(page, screens, "dlq")
    page.click(f"#retry-{entry['id']}")
    page.wait_for_selector("p.flash.ok")
    assert "Requeued 1 dead letter(s)." in page.locator("p.flash.ok").inner_text()
    retried = [
        r for r in demo.call_sync("runs.list", {"job": "demo-fails"}) if r["trigger"] == "retry"
    ]
    assert len(retried) == 1


def test_every_other_page_renders(page: Any, demo: DaemonProcess, screens: Path) -> None:
    """Runs, limits and the cron preview (typing updates it) render with no script error."""
    base = web_address(demo)
    page.goto(base + "/runs")
    page.wait_for_selector("#runs-table")
    shot(page, screens, "runs")
    page.goto(base + "/limits")
    page.wait_for_selector("table.limits")
    shot(page, screens, "limits")
    page.goto(base + "/cron?schedule=30+2+*+*+*&tz=Europe/Berlin")
    assert "every day at 02:30 Europe/Berlin" in page.locator("#cron-verdict").inner_text()
    page.fill("input[name=schedule]", "*/15 * * * *")
    page.wait_for_selector("#cron-verdict:has-text('every 15 minutes')")  # (the CSP bars eval)
    shot(page, screens, "cron")
