"""Three real daemons on one real PostgreSQL database (SPEC §7.4, issue 16's fault tests).

Short TTLs (2 s) keep these quick; the figures each test asserts are the issue's.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import signal
import time
from collections.abc import AsyncIterator, Callable

import pytest

from automationd.errors import AdminError
from tests.support.admin_client import AdminClient
from tests.support.api_server import ApiServer, Reply
from tests.support.daemon import DaemonProcess
from tests.support.fleet import Fleet

TTL = 2.0
KEYED = """
[[jobs]]
name = "keyed"
on = "never"
action = { type = "python", callable = "fleetacts:record" }
"""
SLOW = """
[[jobs]]
name = "slow"
on = "never"
retries = 5
backoff = { base = "100ms", max = "200ms" }
action = { type = "python", callable = "fleetacts:slow" }
"""

Factory = Callable[..., DaemonProcess]


def terminal(fleet: Fleet, job: str, n: int) -> list[list[str]]:
    rows = fleet.psql(f"SELECT id, state, finished_at FROM runs WHERE job = '{job}'")
    done = [r for r in rows if r[1] in ("succeeded", "failed", "partial", "cancelled")]
    return rows if len(done) >= n else []


async def test_2000_keyed_triggers_spread_over_three_daemons_run_once_each(
    daemon_factory: Factory, pg_dsn: str
) -> None:
    """1. Three daemons; 2,000 keyed triggers, each sent to one daemon, and 400 of the keys
    sent again to another daemon at the same time.
    Result: one run per key (both answers name it), and each run executed exactly once."""
    fleet = Fleet(daemon_factory, pg_dsn, jobs=KEYED)
    fleet.start()

    async def send(d: DaemonProcess, keys: list[int]) -> list[dict[str, object]]:
        async with AdminClient(d.socket, timeout=60) as c:
            reqs = [("jobs.trigger", {"name": "keyed", "idempotency_key": f"k{k}"}) for k in keys]
            return await c.pipeline(reqs)

    plan: dict[int, list[int]] = {i: [] for i in range(3)}
    for k in range(2000):
        plan[k % 3].append(k)
        if k % 5 == 0:
            plan[(k + 1) % 3].append(k)  # the same key on a second daemon, concurrently
    async with asyncio.timeout(90):
        answers = await asyncio.gather(*(send(fleet.daemons[i], plan[i]) for i in range(3)))
    by_key: dict[str, set[str]] = collections.defaultdict(set)
    for i, replies in enumerate(answers):
        for k, reply in zip(plan[i], replies, strict=True):
            assert reply["ok"], reply
            by_key[f"k{k}"].add(reply["result"]["id"])  # type: ignore[index]
    assert len(by_key) == 2000 and all(len(ids) == 1 for ids in by_key.values())
    run_ids = {next(iter(ids)) for ids in by_key.values()}
    fleet.wait_for(lambda: terminal(fleet, "keyed", 2000), timeout=60)
    executed = collections.Counter(r for r, _, _, _ in fleet.executions())
    assert set(executed) == run_ids
    assert max(executed.values()) == 1
    states = collections.Counter(r[1] for r in terminal(fleet, "keyed", 2000))
    assert states == {"succeeded": 2000}
    # a daemon starved past the TTL under this load is declared dead (fencing kept every
    # count above right); it is back in the registry within a heartbeat
    fleet.wait_for(
        lambda: {w["id"] for w in fleet.daemons[1].call_sync("workers.list")} == {"n0", "n1", "n2"},
        timeout=10,
    )


def test_kill9_under_load_loses_nothing_and_the_others_finish_its_runs(
    daemon_factory: Factory, pg_dsn: str
) -> None:
    """1. Three daemons (TTL 2 s, 6 workers each); 60 runs of a 0.5 s action triggered,
    20 on each. 2. kill -9 daemon n0 while its attempts run.
    Result: every acknowledged run succeeds; n0's were finished by the others within
    TTL + 2 s of the kill, each with its cut attempt recorded ``interrupted``."""
    fleet = Fleet(daemon_factory, pg_dsn, jobs=SLOW, workers=6, delay=0.5)
    fleet.start()
    acked: list[str] = []
    for i in range(3):
        replies = fleet.pipeline(i, [("jobs.trigger", {"name": "slow"})] * 20)
        acked += [r["result"]["id"] for r in replies]
    fleet.wait_for(
        lambda: any(p for _, _, p, w in fleet.executions() if p == fleet.daemons[0].proc.pid),  # type: ignore[union-attr]
        timeout=10,
        step=0.02,
    )
    fleet.daemons[0].kill9()
    killed_at = time.time()
    rows = fleet.wait_for(lambda: terminal(fleet, "slow", 60), timeout=30)
    assert {r[0] for r in rows} == set(acked)
    assert {r[1] for r in rows} == {"succeeded"}
    cut = fleet.psql("SELECT DISTINCT run_id FROM attempts WHERE outcome = 'interrupted'")
    assert cut, "n0 held running attempts when it was killed"
    finished = {r[0]: float(r[2]) for r in rows}
    late = max(finished[c[0]] for c in cut) - killed_at
    print(f"kill -9: {len(cut)} runs of n0 cut, all finished {late:.2f}s after the kill")
    assert late <= TTL + 2.0, f"n0's runs finished {late:.2f}s after the kill"
    ok = collections.Counter(
        r[0] for r in fleet.psql("SELECT run_id FROM attempts WHERE outcome = 'ok'")
    )
    assert set(ok) == set(acked) and max(ok.values()) == 1


def test_a_stalled_daemon_cannot_finish_runs_the_others_took_over(
    daemon_factory: Factory, pg_dsn: str
) -> None:
    """1. Three daemons (TTL 2 s); 6 runs of a 1.5 s action start on n0.
    2. SIGSTOP n0 for 3.5 s (longer than the TTL), then SIGCONT.
    Result: the others rescue and finish the runs; n0's own ends (its actions finished after
    it woke) are refused by the fencing token: every run has one ``ok`` attempt, one
    ``run.succeeded`` event, and n0 starts a new life (declared dead, back in the registry)."""
    fleet = Fleet(daemon_factory, pg_dsn, jobs=SLOW, workers=8, delay=1.5)
    fleet.start()
    n0 = fleet.daemons[0]
    replies = fleet.pipeline(0, [("jobs.trigger", {"name": "slow"})] * 6)
    ids = [r["result"]["id"] for r in replies]  # type: ignore[index]
    assert all(r["result"]["state"] == "running" for r in replies)  # type: ignore[index]
    fleet.wait_for(lambda: len([e for e in fleet.executions() if e[3] == "start"]) >= 6, 10, 0.02)
    n0.send(signal.SIGSTOP)
    try:
        time.sleep(TTL + 1.5)
    finally:
        n0.send(signal.SIGCONT)
    rows = fleet.wait_for(lambda: terminal(fleet, "slow", 6), timeout=20)
    assert {r[1] for r in rows} == {"succeeded"}
    time.sleep(2.0)  # n0's actions end now; their writes must all be refused
    ok = collections.Counter(
        r[0] for r in fleet.psql("SELECT run_id FROM attempts WHERE outcome = 'ok'")
    )
    assert ok == {i: 1 for i in ids}
    events = collections.Counter(
        r[0]
        for r in fleet.psql(
            "SELECT payload::json->>'run_id' FROM events WHERE name = 'run.succeeded'"
        )
    )
    assert events == {i: 1 for i in ids}
    n0_pid = n0.proc.pid  # type: ignore[union-attr]
    assert any(p == n0_pid and w == "done" for _, _, p, w in fleet.executions())
    logged = {e.get("event") for e in n0.log_events()}
    assert "node.declared_dead" in logged or "run.end_refused" in logged
    assert fleet.wait_for(
        lambda: len(n0.call_sync("workers.list")) == 3 and n0.call_sync("status")["node"], 10
    )


def test_leader_killed_every_due_second_still_has_exactly_one_run(
    daemon_factory: Factory, pg_dsn: str
) -> None:
    """1. Three daemons (TTL 2 s) with a ``*/1 * * * * *`` job; 2. kill -9 the leader after
    3 s of fires; 3. wait 5 s.
    Result: a new leader took over; no due second has two runs, and at most the TTL's worth
    of seconds between the first and last fire has none."""
    jobs = """
[[jobs]]
name = "tick"
schedule = "*/1 * * * * *"
action = { type = "python", callable = "fleetacts:record" }
"""
    fleet = Fleet(daemon_factory, pg_dsn, jobs=jobs)
    fleet.start()
    first = fleet.wait_for(fleet.leader, timeout=10)
    time.sleep(3.0)
    fleet.daemons[int(first[1:])].kill9()
    time.sleep(TTL + 3.0)
    second = fleet.wait_for(fleet.leader, timeout=10)
    assert second != first
    dues = [float(r[0]) for r in fleet.psql("SELECT scheduled_for FROM runs WHERE job = 'tick'")]
    counts = collections.Counter(dues)
    assert max(counts.values()) == 1
    span = range(int(min(dues)), int(max(dues)) + 1)
    missing = [s for s in span if float(s) not in counts]
    print(f"leader killed: {len(dues)} fires over {len(span)} s, {len(missing)} s without one")
    assert len(missing) <= TTL, f"seconds without a run: {missing}"
    assert len(dues) >= 6


def test_status_and_workers_show_the_fleet_and_any_socket_shows_every_run(
    daemon_factory: Factory, pg_dsn: str
) -> None:
    """``status`` has node {id, leader} and fleet {nodes}; ``workers.list`` lists all three
    with one leader; a run triggered on n0 is found through n2's socket; an API job added on
    n1 appears on n2, and its pause there is seen by n0; an event published with one key on
    two daemons is stored once and starts its job once; a run running on n0 is cancelled
    through n2's socket."""
    listener = '\n[[jobs]]\nname = "listener"\non = "ev.*"\n'
    listener += 'action = { type = "python", callable = "fleetacts:record" }\n'
    fleet = Fleet(daemon_factory, pg_dsn, jobs=KEYED + SLOW + listener, delay=30.0)
    fleet.start()
    n0, n1, n2 = fleet.daemons
    workers = fleet.wait_for(lambda: n2.call_sync("workers.list"), 10)
    assert {w["id"] for w in workers} == {"n0", "n1", "n2"}
    assert sum(w["leader"] for w in workers) == 1
    assert set(workers[0]) >= {
        "id",
        "host",
        "pid",
        "version",
        "started_at",
        "heartbeat_at",
        "capacity",
        "busy",
        "leader",
    }
    status = fleet.wait_for(lambda: (s := n0.call_sync("status"))["fleet"]["nodes"] == 3 and s, 10)
    assert status["node"]["id"] == "n0" and isinstance(status["node"]["leader"], bool)
    run = n0.call_sync("jobs.trigger", {"name": "keyed"})
    assert n2.call_sync("runs.get", {"id": run["id"]})["id"] == run["id"]
    spec = {"name": "api1", "on": "x", "action": {"type": "python", "callable": "fleetacts:record"}}
    n1.call_sync("jobs.add", {"job": spec})
    fleet.wait_for(lambda: any(j["name"] == "api1" for j in n2.call_sync("jobs.list")), 10)
    n2.call_sync("jobs.pause", {"name": "api1"})
    fleet.wait_for(lambda: n0.call_sync("jobs.get", {"name": "api1"})["state"] == "paused", 10)
    first = n0.call_sync("events.publish", {"name": "ev.x", "idempotency_key": "e1"})
    again = n1.call_sync("events.publish", {"name": "ev.x", "idempotency_key": "e1"})
    assert again["id"] == first["id"] and again.get("existing") is True
    assert again["triggered"] == first["triggered"] and len(first["triggered"]) == 1
    fleet.wait_for(lambda: terminal(fleet, "listener", 1), 10)
    assert len(fleet.psql("SELECT id FROM runs WHERE job = 'listener'")) == 1
    slow = n0.call_sync("jobs.trigger", {"name": "slow"})
    assert slow["state"] == "running"
    cancelled = n2.call_sync("runs.cancel", {"id": slow["id"]})
    assert cancelled["state"] == "cancelled"
    n1.call_sync("jobs.remove", {"name": "api1"})
    fleet.wait_for(lambda: all(j["name"] != "api1" for j in n0.call_sync("jobs.list")), 10)
    with pytest.raises(AdminError):
        n0.call_sync("jobs.get", {"name": "api1"})
    for d in fleet.daemons:
        assert d.stop() == 0
    assert fleet.log.exists()


RATE_JOB = """
[[jobs]]
name = "call"
on = "never"
service = "partner"
retries = 0
action = { type = "http", method = "POST", url = "URL" }
"""


async def _shared_rate(factory: Factory, dsn: str, api: ApiServer, seconds: float) -> None:
    """Three daemons share ``rate = "50/s", burst = 5``; enough runs for ``seconds`` at that
    rate are triggered on all three at once. Measured where it matters, at the partner (a
    real aiohttp server on 127.0.0.1): every 1 s window holds at most 50 + 5 requests, the
    whole span at most 50/s plus the burst, and the rate is really reached."""
    api.always("/hit", Reply(200, json={"ok": True}))
    services = '[services.partner]\nrate = "50/s"\nburst = 5\n'
    fleet = Fleet(
        factory, dsn, jobs=RATE_JOB.replace("URL", api.url_for("/hit")), services=services
    )
    await asyncio.to_thread(fleet.start)
    total = int(50 * seconds)
    per = -(-total // 3)

    async def send(d: DaemonProcess) -> None:
        async with AdminClient(d.socket, timeout=60) as c:
            replies = await c.pipeline([("jobs.trigger", {"name": "call"})] * per)
        assert all(r["ok"] for r in replies)

    async with asyncio.timeout(30):
        await asyncio.gather(*(send(d) for d in fleet.daemons))
    async with asyncio.timeout(seconds * 3 + 30):
        await api.wait_for_requests(3 * per, "/hit")
    times = sorted(r.at for r in api.received("/hit"))
    span = times[-1] - times[0]

    def busiest(window: float) -> int:
        return max(bisect.bisect_right(times, t + window) - i for i, t in enumerate(times))

    print(
        f"fleet rate: {len(times)} requests in {span:.2f}s = {len(times) / span:.2f}/s,"
        f" busiest 1 s window {busiest(1.0)}, busiest 5 s window {busiest(5.0)}"
    )
    # The bucket's bound over any window w is burst + rate x w: the "at most 50/s",
    # checked over the whole span and every 5 s and 1 s window. A grant is not the request:
    # the attempt's start is made durable in between (a group commit), so arrivals at the
    # partner trail their grants by a varying few tens of ms; 0.2 s of that is allowed for.
    jitter = 0.2
    assert len(times) <= 5 + 50 * (span + jitter)
    assert busiest(5.0) <= 5 + 50 * (5.0 + jitter)
    assert busiest(1.0) <= 5 + 50 * (1.0 + jitter)
    assert len(times) / span >= 40, f"only {len(times) / span:.1f}/s: the fleet held back"


@pytest.fixture
async def api_server() -> AsyncIterator[ApiServer]:
    async with ApiServer() as server:
        yield server


async def test_a_service_rate_holds_for_the_whole_fleet(
    daemon_factory: Factory, pg_dsn: str, api_server: ApiServer
) -> None:
    """Three daemons share one service's ``rate = "50/s"`` (8 s of work; 30 s under -m slow):
    the partner never sees more than the rate (plus the burst) in any second."""
    await _shared_rate(daemon_factory, pg_dsn, api_server, 8.0)


@pytest.mark.slow
async def test_a_service_rate_holds_for_the_whole_fleet_over_30s(
    daemon_factory: Factory, pg_dsn: str, api_server: ApiServer
) -> None:
    """As above, over 30 s (the issue's figure)."""
    await _shared_rate(daemon_factory, pg_dsn, api_server, 30.0)
