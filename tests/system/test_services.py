"""Partner-API protection through the real daemon (issue 5; SPEC §2 services, §3, §4, §6).

The "external API" is a scripted aiohttp server in this test process; its arrival times
(``time.monotonic()``) are where every rate, pause and breaker assertion is measured. The test
process must never block its event loop (the server lives in it), so runs are awaited with
async polling over the admin socket, never with the blocking ``DaemonProcess.wait_run``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api_server import ApiServer, Reply
from tests.support.daemon import DaemonProcess

DaemonFactory = Callable[..., DaemonProcess]

TERMINAL = ("succeeded", "partial", "failed", "skipped", "cancelled")


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    """The scripted partner API on 127.0.0.1, closed when the test ends."""
    async with ApiServer() as server:
        yield server


async def until(
    d: DaemonProcess, cmd: str, args: dict[str, Any], ok: Callable[[Any], bool], limit: float = 8.0
) -> Any:
    """Poll ``cmd`` until ``ok(result)``, without blocking the loop (the API server lives in
    it); the socket has no push channel for run or limit changes."""
    async with asyncio.timeout(limit):
        while True:
            result = await d.call(cmd, args)
            if ok(result):
                return result
            await asyncio.sleep(0.01)


async def wait_run(d: DaemonProcess, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = await until(
        d, "runs.get", {"id": run_id}, lambda r: r["state"] in TERMINAL
    )
    return run


async def start(d: DaemonProcess) -> None:
    """Start the daemon off the loop, so the API server keeps answering meanwhile."""
    async with asyncio.timeout(20):
        await asyncio.to_thread(d.start)


async def scrape(d: DaemonProcess) -> str:
    """GET /metrics at the address the daemon logged in ``daemon.ready``."""
    ready = next(e for e in d.log_events() if e.get("event") == "daemon.ready")
    url = f"http://{ready['metrics']}/metrics"
    async with asyncio.timeout(5), aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return await r.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text (labels in any order), None when absent."""
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        got, _, rest = series.partition("{")
        pairs = (p.split("=", 1) for p in rest.rstrip("}").split(",") if p)
        if got == name and {k: v.strip('"') for k, v in pairs} == labels:
            return float(value)
    return None


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def http_job(name: str, service: str, api: ApiServer, path: str, n: int, retries: int) -> str:
    """A job GETting ``path`` + ``/${target}`` (or ``?t=${target}`` when path ends in "?")."""
    targets = ", ".join(str(i) for i in range(1, n + 1))
    url = (
        api.url_for(path[:-1]) + "?t=${target}"
        if path.endswith("?")
        else (api.url_for(path) + "/${target}")
    )
    return textwrap.dedent(
        f"""
        [[jobs]]
        name = "{name}"
        on = "never.*"
        service = "{service}"
        retries = {retries}
        backoff = {{ base = "10ms", max = "20ms", multiplier = 2.0, jitter = 0.0 }}
        targets = [{targets}]
        action = {{ type = "http", method = "GET", url = "{url}" }}
        """
    )


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """Most arrivals in any closed window of ``width`` seconds."""
    best = 0
    for i, t0 in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t - t0 <= width))
    return best


# --------------------------------------------------------------------------- token bucket
async def test_rate_4_per_s_burst_1_spaces_13_requests(
    daemon_factory: DaemonFactory, api: ApiServer
) -> None:
    """13 targets at 4/s, burst 1, concurrency 8 arrive over 3 s, never > 5 in one second."""
    for i in range(1, 14):
        api.always(f"/t/{i}", Reply(200, json={"i": i}))
    d = daemon_factory(
        services='[services.api]\nrate = "4/s"\nburst = 1\nconcurrency = 8\n',
        jobs=http_job("spread", "api", api, "/t", 13, retries=0),
    )
    await start(d)
    run = await d.call("jobs.trigger", {"name": "spread"})
    done = await wait_run(d, run["id"])
    assert done["state"] == "succeeded"
    times = sorted(r.at for r in api.received())
    assert len(times) == 13
    span = times[-1] - times[0]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(f"span={span:.4f}s gaps min={min(gaps):.4f} max={max(gaps):.4f}")
    assert 2.85 <= span <= 4.0
    assert max_in_window(times) <= 5
    text = await scrape(d)
    assert sample(text, "automationd_http_responses_total", code="200", service="api") == 13
    assert sample(text, "automationd_ratelimit_tokens", service="api") is not None
    assert sample(text, "automationd_ratelimit_wait_seconds_count", service="api") == 13


# --------------------------------------------------------------------------- 429 pause
async def test_429_retry_after_pauses_whole_service(
    daemon_factory: DaemonFactory, api: ApiServer
) -> None:
    """1. A 4-target run (concurrency 1); the first request gets 429 with Retry-After: 2.
    2. The other targets are queued behind the pause, not only the 429'd target's retry.
    Result: no request reaches the server for 2 s (±10 %), then all four succeed."""
    api.script("/p", Reply(429, headers={"Retry-After": "2"}))  # whichever target is first
    api.always("/p", Reply(200, json={"ok": True}))
    d = daemon_factory(
        services="[services.api]\nconcurrency = 1\n",
        jobs=http_job("paused", "api", api, "/p?", 4, retries=2),
    )
    await start(d)
    run = await d.call("jobs.trigger", {"name": "paused"})
    done = await wait_run(d, run["id"])
    assert done["state"] == "succeeded"
    got = api.received()
    assert len(got) == 5
    assert got[-1].query == got[0].query  # the 429'd target retried last, after the others
    gap = got[1].at - got[0].at
    print(f"pause gap={gap:.4f}s")
    assert 1.8 <= gap <= 2.2
    outcomes = sorted(a["outcome"] for a in done["attempts"])
    assert outcomes == ["ok"] * 4 + ["rate_limited"]
    text = await scrape(d)
    assert sample(text, "automationd_http_responses_total", code="429", service="api") == 1


# --------------------------------------------------------------------------- breaker
async def test_breaker_opens_after_3_failures_then_lets_one_probe(
    daemon_factory: DaemonFactory, api: ApiServer
) -> None:
    """1. An always-500 service, breaker failures = 3, reset 1 s; a 6-target run, retries 0.
    2. Three requests fail and trip the breaker; the other three attempts are refused.
    3. After the reset a second run sends exactly one probe, which fails and reopens it.
    Result: 3 requests, then 1; breaker_state 2; refused attempts end breaker_open."""
    for i in range(1, 7):
        api.always(f"/b/{i}", Reply(500))
    d = daemon_factory(
        services='[services.api]\nconcurrency = 1\nbreaker = { failures = 3, reset = "1s" }\n',
        jobs=http_job("dead", "api", api, "/b", 6, retries=0),
    )
    await start(d)
    run = await d.call("jobs.trigger", {"name": "dead"})
    done = await wait_run(d, run["id"])
    assert done["state"] == "failed"
    assert len(api.received()) == 3
    outcomes = sorted(a["outcome"] for a in done["attempts"])
    assert outcomes == ["breaker_open"] * 3 + ["retryable"] * 3
    assert {t["state"] for t in done["targets"]} == {"failed"}
    [row] = await d.call("breakers.list")
    assert row["service"] == "api" and row["state"] == "open" and row["failures"] == 3
    opened = ts(row["opened_at"])
    text = await scrape(d)
    assert sample(text, "automationd_breaker_state", service="api") == 2
    assert sample(text, "automationd_http_responses_total", code="500", service="api") == 3

    await asyncio.sleep(1.1)  # past reset: the next caller is the half-open probe
    again = await wait_run(d, (await d.call("jobs.trigger", {"name": "dead"}))["id"])
    assert len(api.received()) == 4
    outcomes = sorted(a["outcome"] for a in again["attempts"])
    assert outcomes == ["breaker_open"] * 5 + ["retryable"]
    [row] = await d.call("breakers.list")
    assert row["state"] == "open" and ts(row["opened_at"]) > opened


# --------------------------------------------------------------------------- isolation
ISOLATION_SERVICES = """
[workers]
max_concurrency = 2

[services.slow]
rate = "1/1h"
burst = 1
breaker = { failures = 5, reset = "1m" }

[services.fast]
concurrency = 4
"""


def quick_job(api: ApiServer) -> str:
    return textwrap.dedent(
        f"""
        [[jobs]]
        name = "quick"
        on = "never.*"
        service = "fast"
        action = {{ type = "http", method = "GET", url = "{api.url_for("/q")}" }}
        """
    )


async def start_delay(d: DaemonProcess) -> float:
    """Seconds from a trigger (run created) to its attempt's start, as the daemon saw them."""
    run = await wait_run(d, (await d.call("jobs.trigger", {"name": "quick"}))["id"])
    assert run["state"] == "succeeded"
    return ts(run["attempts"][0]["started_at"]) - ts(run["created_at"])


async def test_limited_service_does_not_delay_other_services(
    daemon_factory: DaemonFactory, api: ApiServer
) -> None:
    """1. Baseline: trigger-to-attempt delay of a job on service 'fast' (2 workers in all).
    2. 100 targets queue on 'slow' (1/1h: one goes, 99 wait for a token).
    Result: 'fast' starts within a few ms of its baseline; waiters hold no worker."""
    api.always("/q", Reply(200))
    for i in range(1, 101):
        api.always(f"/s/{i}", Reply(200))
    d = daemon_factory(
        extra=ISOLATION_SERVICES,
        jobs=http_job("flood", "slow", api, "/s", 100, retries=0) + quick_job(api),
    )
    await start(d)
    baseline = [await start_delay(d) for _ in range(3)]
    await d.call("jobs.trigger", {"name": "flood"})
    await until(
        d, "limits.list", {}, lambda rows: (rows[1]["waiting"], rows[1]["in_flight"]) == (99, 0)
    )
    loaded = [await start_delay(d) for _ in range(3)]
    print(f"start delay baseline={baseline} loaded={loaded}")
    assert len(api.received("/q")) == 6 and len(api.received()) == 7
    assert sorted(loaded)[1] <= sorted(baseline)[1] + 0.010  # medians: a few ms at most
    assert max(loaded) <= 0.1


# --------------------------------------------------------------------------- visibility
def ctl(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "automationctl"), "--socket", str(d.socket), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


async def test_limits_and_breakers_over_socket_and_ctl(
    daemon_factory: DaemonFactory, api: ApiServer
) -> None:
    """limits.list / breakers.list carry the SPEC §3 fields; automationctl prints them as
    tables, and with --json prints the socket's result."""
    for i in range(1, 11):
        api.always(f"/s/{i}", Reply(200))
    d = daemon_factory(extra=ISOLATION_SERVICES, jobs=http_job("flood", "slow", api, "/s", 10, 0))
    await start(d)
    await d.call("jobs.trigger", {"name": "flood"})
    await until(
        d, "limits.list", {}, lambda rows: (rows[1]["waiting"], rows[1]["in_flight"]) == (9, 0)
    )
    fast, slow = await d.call("limits.list")
    spec_fields = {"service", "rate", "burst", "tokens", "waiting", "paused_until", "in_flight"}
    assert spec_fields <= set(slow) and spec_fields <= set(fast)
    assert slow["service"] == "slow" and slow["rate"] == "1/1h" and slow["burst"] == 1
    assert slow["waiting"] == 9 and slow["in_flight"] == 0 and slow["paused_until"] is None
    assert 0 <= slow["tokens"] < 0.01
    assert fast["service"] == "fast" and fast["rate"] is None and fast["waiting"] == 0
    breakers = await d.call("breakers.list")
    assert breakers == [{"service": "slow", "state": "closed", "failures": 0, "opened_at": None}]

    async with asyncio.timeout(10):
        limits_tab, limits_js, brk_tab, brk_js = await asyncio.gather(
            asyncio.to_thread(ctl, d, "limits"),
            asyncio.to_thread(ctl, d, "--json", "limits"),
            asyncio.to_thread(ctl, d, "breakers"),
            asyncio.to_thread(ctl, d, "--json", "breakers"),
        )
    for proc in (limits_tab, limits_js, brk_tab, brk_js):
        assert proc.returncode == 0, proc.stderr
    head, *rows = limits_tab.stdout.splitlines()
    assert head.split() == [
        "SERVICE",
        "RATE",
        "BURST",
        "TOKENS",
        "WAITING",
        "IN",
        "FLIGHT",
        "PAUSED",
        "UNTIL",
    ]
    assert [r.split()[0] for r in rows] == ["fast", "slow"]
    assert rows[1].split()[1:3] == ["1/1h", "1"] and rows[1].split()[4] == "9"
    js = json.loads(limits_js.stdout)
    assert [r["service"] for r in js] == ["fast", "slow"] and js[1]["waiting"] == 9
    head, *rows = brk_tab.stdout.splitlines()
    assert head.split() == ["SERVICE", "STATE", "FAILURES", "OPENED", "AT"]
    assert rows[0].split()[:3] == ["slow", "closed", "0"]
    assert json.loads(brk_js.stdout) == breakers


# --------------------------------------------------------------------------- python pause
PY_ACTIONS = """
from automationd import RetryableError

SEEN = set()

async def slow_down(ctx):
    if not SEEN:  # the first call, whichever target makes it
        SEEN.add(ctx.target)
        raise RetryableError("slow down", retry_after=1.0)
    return {"target": ctx.target}
"""


async def test_python_retry_after_pauses_whole_service(
    daemon_factory: DaemonFactory,
) -> None:
    """RetryableError(retry_after=1) from a python action pauses the whole service: no
    target's next attempt starts for 1 s, and limits.list shows the pause."""
    d = daemon_factory(
        services="[services.py]\nconcurrency = 1\n",
        jobs=textwrap.dedent(
            """
            [[jobs]]
            name = "pyjob"
            on = "never.*"
            service = "py"
            retries = 1
            targets = [1, 2, 3]
            action = { type = "python", callable = "pyacts:slow_down" }
            """
        ),
    )
    (d.base / "pyacts.py").write_text(PY_ACTIONS)
    await start(d)
    run = await d.call("jobs.trigger", {"name": "pyjob"})
    await until(d, "limits.list", {}, lambda rows: rows[0]["paused_until"] is not None)
    done = await wait_run(d, run["id"])
    assert done["state"] == "succeeded"
    first, *rest = sorted(done["attempts"], key=lambda a: ts(a["started_at"]))
    assert first["outcome"] == "rate_limited"
    assert sorted(a["target"] for a in rest) == [1, 2, 3]
    gap = min(ts(a["started_at"]) for a in rest) - ts(first["finished_at"])
    print(f"python pause gap={gap:.4f}s")
    assert 0.99 <= gap <= 1.3  # timestamps carry milliseconds
