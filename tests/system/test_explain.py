"""``jobs.explain`` (issue 14): why a job is or is not running right now, from live state.
A table-driven test against one real daemon: one job per reason, each brought into its state
the way it happens in production (a pause, max_runs, a full worker pool, an empty token
bucket, a 429, an open breaker, an overlap skip, misfires dropped across a restart, a failed
run), then asked why."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tests.support.api_server import ApiServer, Reply
from tests.support.daemon import BIN, DaemonProcess

Factory = Callable[..., DaemonProcess]

SERVICES = """
[services.slow]
rate = "1/1h"
burst = 1

[services.flaky]
breaker = { failures = 1, reset = "1h" }

[services.limited]
"""
MISFIRE = (
    '[[jobs]]\nname = "misfire"\nschedule = "@every 1s"\nmisfire = "skip"\n'
    'misfire_grace = "0s"\naction = { type = "exec", argv = ["/bin/true"] }\n'
)
EXTRA = "[workers]\nmax_concurrency = 2\n"


def exec_job(name: str, argv: list[str], **keys: Any) -> dict[str, Any]:
    return {"name": name, "on": f"{name}.go", "action": {"type": "exec", "argv": argv}, **keys}


def sleeper(name: str, **keys: Any) -> dict[str, Any]:
    return exec_job(name, ["/bin/sleep", "30"], **keys)


async def until(what: str, probe: Callable[[], Any]) -> Any:
    """Poll ``probe`` (a coroutine function) until it returns something truthy (15 s)."""
    t0 = time.monotonic()
    while True:
        got = await probe()
        if got:
            return got
        assert time.monotonic() - t0 < 15, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# job → the reason code its explanation must include
EXPECTED = {
    "paused": "paused",
    "done": "completed",
    "worker": "waiting_worker",
    "tokens": "waiting_tokens",
    "throttled": "service_paused",
    "breaker": "breaker_open",
    "overlap": "overlap_skip",
    "misfire": "misfire_dropped",
    "failing": "last_failed",
    "scheduled": "scheduled",
}


async def test_explain_names_the_reason_in_each_state(daemon_factory: Factory) -> None:
    """Bring one job into each state of the table, then `jobs.explain` it.
    Result: each explanation includes the expected code with a sentence; `state` and
    `next_fire` match the job; the CLI prints the sentences, and `--json` the object."""
    async with ApiServer() as api:
        api.always("/limited", Reply(429, headers={"Retry-After": "3600"}))
        d = daemon_factory(
            services=SERVICES, jobs=MISFIRE, extra=EXTRA, daemon='shutdown_timeout = "1s"'
        )
        d.start()
        async with asyncio.timeout(60):
            await until(
                "a fire of misfire",
                lambda: _count(d, "misfire"),
            )
            assert d.stop() == 0
            await asyncio.sleep(2.5)  # fires missed while down, older than misfire_grace
            d.start()
            await d.call("jobs.pause", {"name": "misfire"})
            await _setup(d, api)
            results = {name: await d.call("jobs.explain", {"name": name}) for name in EXPECTED}
    for name, code in EXPECTED.items():
        got = results[name]
        codes = [r["code"] for r in got["reasons"]]
        assert code in codes, (name, got)
        assert all(r["message"] for r in got["reasons"]), got
        assert got["name"] == name
    assert results["paused"]["state"] == "paused" and results["paused"]["next_fire"] is None
    assert results["done"]["state"] == "completed"
    scheduled = results["scheduled"]
    assert scheduled["next_fire"] is not None
    assert "Europe/Berlin" in scheduled["reasons"][0]["message"]
    assert "03:00:00" in scheduled["reasons"][0]["message"]
    failing = next(r for r in results["failing"]["reasons"] if r["code"] == "last_failed")
    assert "Dead letter" in failing["message"] and "fatal" in failing["message"]

    ctl = [str(BIN / "automationctl"), "--socket", str(d.socket), "jobs", "explain", "scheduled"]
    done = await asyncio.to_thread(subprocess.run, ctl, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Job scheduled is enabled; next fire ")
    assert "- Next fire at" in done.stdout
    assert d.stop(timeout=30) == 0


async def _count(d: DaemonProcess, name: str) -> int:
    job = await d.call("jobs.get", {"name": name})
    return int(job["run_count"])


async def _setup(d: DaemonProcess, api: ApiServer) -> None:
    """Everything but the misfire: each job into its state, in an order that leaves the two
    workers held by the overlap job's run and the blocker when `worker` is triggered."""
    call = d.call
    await call("jobs.add", {"job": exec_job("paused", ["/bin/true"])})
    await call("jobs.pause", {"name": "paused"})
    done = {"name": "done", "schedule": "@at 2020-01-01T00:00:00Z"}
    await call("jobs.add", {"job": {**done, "action": {"type": "exec", "argv": ["/bin/true"]}}})
    await call("jobs.add", {"job": {**exec_job("scheduled", ["/bin/true"]), "on": None}
                            | {"schedule": "0 3 * * *", "timezone": "Europe/Berlin"}})  # fmt: skip
    for name, argv, keys in (
        ("failing", ["/bin/false"], {}),
        ("breaker", ["/bin/sh", "-c", "exit 75"], {"service": "flaky", "retries": 0}),
    ):
        await call("jobs.add", {"job": exec_job(name, argv, **keys)})
        run = await call("jobs.trigger", {"name": name})
        assert (await asyncio.to_thread(d.wait_run, run["id"]))["state"] == "failed"
    throttled = {
        "name": "throttled",
        "on": "t.go",
        "service": "limited",
        "retries": 0,
        "action": {"type": "http", "url": api.url_for("/limited")},
    }
    await call("jobs.add", {"job": throttled})
    run = await call("jobs.trigger", {"name": "throttled"})
    assert (await asyncio.to_thread(d.wait_run, run["id"]))["state"] == "failed"
    await call("jobs.add", {"job": exec_job("tokens", ["/bin/true"], service="slow")})
    first = await call("jobs.trigger", {"name": "tokens"})
    assert (await asyncio.to_thread(d.wait_run, first["id"]))["state"] == "succeeded"
    await call("jobs.trigger", {"name": "tokens"})  # waits an hour for its token
    overlap = {**sleeper("overlap"), "on": None, "schedule": "@every 1s", "overlap": "skip"}
    await call("jobs.add", {"job": overlap})
    await until(
        "an overlap skip",
        lambda: call("runs.list", {"job": "overlap", "state": "skipped"}),
    )
    await call("jobs.add", {"job": sleeper("blocker")})
    await call("jobs.trigger", {"name": "blocker"})
    await until("both workers busy", _busy(d))
    await call("jobs.add", {"job": exec_job("worker", ["/bin/true"])})
    await call("jobs.trigger", {"name": "worker"})


def _busy(d: DaemonProcess) -> Callable[[], Any]:
    async def probe() -> bool:
        status = await d.call("status")
        return bool(status["workers"]["busy"] == status["workers"]["max"])

    return probe
