"""The event bus through the socket and automationctl: publish, when-matching, history, replay,
idempotency, run-outcome chains, the depth limit, retention (SPEC §2 on/when, §3 events.*, §4)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from automationd.errors import AdminError
from tests.support.daemon import BIN, DaemonProcess

ACTIONS = textwrap.dedent(
    """
    from automationd import FatalError

    async def echo(ctx):
        return {"payload": ctx.payload}

    async def fatal(ctx):
        raise FatalError("kept for the dlq")
    """
)

INVENTORY = """
[[jobs]]
name = "inv-eu"
on = "inventory.*"
when = { region = "eu" }
action = { type = "python", callable = "acts:echo" }

[[jobs]]
name = "order-eu"
on = "order.*"
when = { "order.region" = "eu" }
action = { type = "python", callable = "acts:echo" }
"""

CHAIN = """
[[jobs]]
name = "a"
on = "never"
action = { type = "python", callable = "acts:echo" }

[[jobs]]
name = "b"
on = "run.succeeded"
when = { job = "a" }
action = { type = "python", callable = "acts:echo" }

[[jobs]]
name = "loop"
on = "run.succeeded"
when = { job = "loop" }
action = { type = "python", callable = "acts:echo" }
"""

DEPTH_LIMIT = 16  # the daemon's default: a chain holds at most this many runs

Factory = Callable[..., DaemonProcess]


def _start(factory: Factory, jobs: str, extra: str = "") -> DaemonProcess:
    d = factory(jobs=jobs, extra=extra)
    (d.base / "acts.py").write_text(ACTIONS)
    d.start()
    return d


async def call(d: DaemonProcess, cmd: str, args: dict[str, Any] | None = None) -> Any:
    async with asyncio.timeout(10):
        return await d.call(cmd, args or {})


async def wait_for(what: Callable[[], Any], limit_s: float = 5.0) -> Any:
    """Poll ``what`` (the daemon is another process: nothing to wait on but its answers)
    until it returns something truthy, for at most ``limit_s``."""
    async with asyncio.timeout(limit_s):
        for _ in itertools.count():
            if got := what():
                return got
            await asyncio.sleep(0.02)
    raise AssertionError("unreachable")


def db_rows(d: DaemonProcess, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's state DB from this process (WAL: sees every committed write)."""
    with sqlite3.connect(f"file:{d.base / 'state' / 'automationd.db'}?mode=ro", uri=True) as c:
        return c.execute(sql, params).fetchall()


def runs_of(d: DaemonProcess, job: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = d.call_sync("runs.list", {"job": job, "limit": 1000})
    return runs


def metric(d: DaemonProcess, name: str) -> float:
    ready = next(e for e in d.log_events() if e.get("event") == "daemon.ready")
    with urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


async def test_when_matching_payload_history_and_durable_answer(daemon_factory: Factory) -> None:
    """1. Publish inventory.changed for eu, then us, then orders.created (eu, wrong name).
    2. Read the state DB right after the eu answer.
    Result: only the eu event triggers inv-eu, with the event payload as the run's payload;
    the event and its run were already on disk when the answer came; events.list lists all
    three with name/since/limit filters; events_published_total counts every event."""
    d = _start(daemon_factory, INVENTORY)
    eu_payload = {"region": "eu", "sku": "A-1", "qty": 3}
    eu = await call(d, "events.publish", {"name": "inventory.changed", "payload": eu_payload})
    on_disk = db_rows(d, "SELECT name, payload FROM events WHERE id=?", (eu["id"],))
    assert on_disk == [("inventory.changed", json.dumps(eu_payload, separators=(",", ":")))]
    assert len(eu["triggered"]) == 1
    runs_on_disk = db_rows(
        d, "SELECT job, trigger, origin, payload FROM runs WHERE id=?", (eu["triggered"][0],)
    )
    assert runs_on_disk == [("inv-eu", "event", eu["id"], on_disk[0][1])]

    us = await call(
        d,
        "events.publish",
        {"name": "inventory.changed", "payload": {"region": "us", "sku": "A-1"}},
    )
    other = await call(d, "events.publish", {"name": "orders.created", "payload": {"region": "eu"}})
    assert us["triggered"] == [] and other["triggered"] == []
    assert (eu["name"], us["name"], other["name"]) == ("inventory.changed",) * 2 + (
        "orders.created",
    )

    run = d.wait_run(eu["triggered"][0])
    assert run["state"] == "succeeded" and run["trigger"] == "event"
    assert run["payload"] == eu_payload and run["result"] == {"payload": eu_payload}
    assert [r["id"] for r in runs_of(d, "inv-eu")] == eu["triggered"]

    # the finished run publishes run.succeeded (no listener here): wait for it, then list
    await wait_for(lambda: d.call_sync("events.list", {"name": "run.*"}))
    ours = [eu["id"], us["id"], other["id"]]
    listed = await call(d, "events.list", {"limit": 1000})
    assert [e["id"] for e in listed if e["id"] in ours] == ours[::-1]  # newest first
    assert {e["id"]: e["payload"] for e in listed}[eu["id"]] == eu_payload
    named = await call(d, "events.list", {"name": "inventory.*"})
    assert [e["id"] for e in named] == [us["id"], eu["id"]]
    assert [e["id"] for e in await call(d, "events.list", {"name": "*.created"})] == [other["id"]]
    by_time = {e["id"]: e["created_at"] for e in listed}
    since_us = await call(d, "events.list", {"since": by_time[us["id"]], "name": "[io]*"})
    assert [e["id"] for e in since_us] == [other["id"], us["id"]]
    assert [e["id"] for e in await call(d, "events.list", {"limit": 1, "name": "*.c*"})] == [
        other["id"]
    ]
    assert metric(d, "automationd_events_published_total") == len(listed) == 4


async def test_replay_retriggers_only_eu_once_unless_forced(daemon_factory: Factory) -> None:
    """1. Publish eu, us and an unrelated event; replay since the first one.
    2. Replay the same window again; then again with force.
    Result: the first replay starts exactly one inv-eu run (trigger "replay", eu payload);
    the second starts nothing; the forced one starts one more."""
    d = _start(daemon_factory, INVENTORY)
    eu = await call(d, "events.publish", {"name": "inventory.changed", "payload": {"region": "eu"}})
    await call(d, "events.publish", {"name": "inventory.changed", "payload": {"region": "us"}})
    await call(d, "events.publish", {"name": "orders.created", "payload": {"region": "eu"}})
    first = next(e for e in await call(d, "events.list", {}) if e["id"] == eu["id"])

    replay = await call(d, "events.replay", {"since": first["created_at"]})
    assert replay["events"] >= 3 and len(replay["triggered"]) == 1
    run = d.wait_run(replay["triggered"][0])
    assert (run["job"], run["trigger"], run["payload"]) == ("inv-eu", "replay", {"region": "eu"})
    assert run["state"] == "succeeded"
    assert run["idempotency_key"] == f"replay:{eu['id']}"

    again = await call(d, "events.replay", {"since": first["created_at"]})
    assert again["triggered"] == []
    forced = await call(
        d, "events.replay", {"since": first["created_at"], "force": True, "name": "inventory.*"}
    )
    assert forced["events"] == 2 and len(forced["triggered"]) == 1
    assert d.wait_run(forced["triggered"][0])["trigger"] == "replay"
    triggers = sorted(r["trigger"] for r in runs_of(d, "inv-eu"))
    assert triggers == ["event", "replay", "replay"]
    with pytest.raises(AdminError) as info:
        await call(d, "events.replay", {})
    assert info.value.code == "bad_request"


async def test_same_idempotency_key_gives_one_event_and_one_run(daemon_factory: Factory) -> None:
    """Publishing twice with one key (once more concurrently) stores one event and starts one
    run; every repeat answers the first event with ``existing: true``."""
    d = _start(daemon_factory, INVENTORY)
    args = {"name": "inventory.changed", "payload": {"region": "eu"}, "idempotency_key": "k-7"}
    first = await call(d, "events.publish", args)
    second = await call(d, "events.publish", args)
    assert "existing" not in first and second["existing"] is True
    assert (second["id"], second["triggered"]) == (first["id"], first["triggered"])
    async with asyncio.timeout(10):
        more = await asyncio.gather(*(d.call("events.publish", args) for _ in range(10)))
    assert {m["id"] for m in more} == {first["id"]} and all(m["existing"] for m in more)
    assert len(await call(d, "events.list", {"name": "inventory.*"})) == 1
    assert [r["id"] for r in runs_of(d, "inv-eu")] == first["triggered"]
    assert len(first["triggered"]) == 1


async def test_dotted_when_reaches_into_nested_payload(daemon_factory: Factory) -> None:
    """``when = { "order.region" = "eu" }`` matches ``{"order": {"region": "eu"}}`` only."""
    d = _start(daemon_factory, INVENTORY)
    hit = await call(
        d,
        "events.publish",
        {"name": "order.placed", "payload": {"order": {"region": "eu", "id": 9}}},
    )
    miss = await call(
        d, "events.publish", {"name": "order.placed", "payload": {"order": {"region": "us"}}}
    )
    flat = await call(d, "events.publish", {"name": "order.placed", "payload": {"region": "eu"}})
    assert len(hit["triggered"]) == 1 and miss["triggered"] == flat["triggered"] == []
    run = d.wait_run(hit["triggered"][0])
    assert run["job"] == "order-eu" and run["payload"]["order"]["id"] == 9


async def test_run_succeeded_of_a_triggers_b(daemon_factory: Factory) -> None:
    """When job a succeeds, run.succeeded {job: a} starts job b with that payload."""
    d = _start(daemon_factory, CHAIN)
    a = await call(d, "jobs.trigger", {"name": "a"})
    assert d.wait_run(a["id"])["state"] == "succeeded"
    b_runs = await wait_for(lambda: runs_of(d, "b"))
    assert len(b_runs) == 1
    b = d.wait_run(b_runs[0]["id"])
    assert b["trigger"] == "event" and b["state"] == "succeeded"
    assert b["payload"] == {"job": "a", "run_id": a["id"], "state": "succeeded"}
    # b's own run.succeeded is stored just after b's end (reported once that is durable)
    events = await wait_for(
        lambda: (
            [
                e
                for e in d.call_sync("events.list", {"name": "run.succeeded"})
                if e["payload"]["job"] == "b"
            ]
            and d.call_sync("events.list", {"name": "run.succeeded"})
        )
    )
    assert {e["payload"]["job"] for e in events} == {"a", "b"}
    assert runs_of(d, "loop") == []


async def test_self_triggering_job_stops_at_depth_limit(daemon_factory: Factory) -> None:
    """1. Trigger ``loop``, whose own run.succeeded triggers it again.
    Result: exactly DEPTH_LIMIT runs (the manual one and DEPTH_LIMIT - 1 chained), one
    ``event.depth_limit`` warning, no further runs, and the daemon stays responsive."""
    d = _start(daemon_factory, CHAIN)
    await call(d, "jobs.trigger", {"name": "loop"})
    cut = await wait_for(
        lambda: [e for e in d.log_events() if e.get("event") == "event.depth_limit"], limit_s=10
    )
    assert len(cut) == 1
    assert (cut[0]["depth"], cut[0]["limit"], cut[0]["jobs"]) == (
        DEPTH_LIMIT,
        DEPTH_LIMIT,
        ["loop"],
    )
    assert cut[0]["level"] == "warning"
    t0 = time.monotonic()
    status = await call(d, "status")
    assert time.monotonic() - t0 < 1.0
    a = await call(d, "jobs.trigger", {"name": "a"})
    assert d.wait_run(a["id"])["state"] == "succeeded"
    await asyncio.sleep(0.2)  # room for a run the limit failed to stop to show up
    runs = runs_of(d, "loop")
    assert len(runs) == DEPTH_LIMIT
    assert all(r["state"] == "succeeded" for r in runs)
    assert sorted(r["trigger"] for r in runs) == ["event"] * (DEPTH_LIMIT - 1) + ["manual"]
    assert status["runs_in_flight"] <= 1
    assert len([e for e in d.log_events() if e.get("event") == "event.depth_limit"]) == 1


async def test_retention_prunes_old_runs_and_events_but_keeps_the_dlq(
    daemon_factory: Factory,
) -> None:
    """With runs_max_age = events_max_age = 1s and prune_interval = 200ms, finished runs and
    events vanish soon after they age, while the dead-letter queue (and its run) stays."""
    d = _start(
        daemon_factory,
        INVENTORY
        + """
[[jobs]]
name = "doomed"
on = "never"
retries = 0
action = { type = "python", callable = "acts:fatal" }
""",
        extra='[retention]\nruns_max_age = "1s"\nevents_max_age = "1s"\nprune_interval = "200ms"',
    )
    ev = await call(d, "events.publish", {"name": "inventory.changed", "payload": {"region": "eu"}})
    run_id = ev["triggered"][0]
    d.wait_run(run_id)
    doomed = await call(d, "jobs.trigger", {"name": "doomed"})
    assert d.wait_run(doomed["id"])["state"] == "failed"

    def gone() -> bool:
        try:
            d.call_sync("runs.get", {"id": run_id})
        except AdminError as exc:
            return exc.code == "not_found"
        return False

    await wait_for(gone)
    await wait_for(lambda: d.call_sync("events.list", {}) == [])
    assert db_rows(d, "SELECT COUNT(*) FROM attempts WHERE run_id=?", (run_id,)) == [(0,)]
    assert [e["run_id"] for e in await call(d, "dlq.list", {})] == [doomed["id"]]
    assert (await call(d, "runs.get", {"id": doomed["id"]}))["state"] == "failed"
    assert any(e.get("event") == "retention.pruned" for e in d.log_events())


def ctl(d: DaemonProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "automationctl"), "--socket", str(d.socket), *argv],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


async def test_automationctl_events_publish_list_replay(daemon_factory: Factory) -> None:
    """``automationctl events publish|list|replay`` work in table and --json form."""
    d = _start(daemon_factory, INVENTORY)
    out = ctl(
        d,
        "events",
        "publish",
        "inventory.changed",
        "--payload",
        '{"region":"eu"}',
        "--idempotency-key",
        "c-1",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("published event ") and "triggered runs: " in out.stdout
    pub = json.loads(
        ctl(
            d,
            "--json",
            "events",
            "publish",
            "inventory.changed",
            "--payload",
            '{"region":"eu"}',
            "--idempotency-key",
            "c-1",
        ).stdout
    )
    assert pub["existing"] is True and len(pub["triggered"]) == 1
    table = ctl(d, "events", "list", "--name", "inventory.*")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.strip().splitlines()
    assert header.split()[:3] == ["ID", "NAME", "CREATED"]
    assert len(rows) == 1 and pub["id"] in rows[0] and "inventory.changed" in rows[0]
    listed = json.loads(ctl(d, "--json", "events", "list", "--since", "1m", "--limit", "5").stdout)
    assert pub["id"] in [e["id"] for e in listed]
    d.wait_run(pub["triggered"][0])
    rep = ctl(d, "events", "replay", "--since", "1m", "--name", "inventory.*")
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.startswith("replayed 1 event(s); triggered runs: ")
    again = json.loads(ctl(d, "--json", "events", "replay", "--since", "1m").stdout)
    assert again["triggered"] == []
    bad = ctl(d, "events", "replay")
    assert bad.returncode == 2
