"""Runs that wait for a worker (engine/launcher.py: a pool reservation, no task yet)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable

from tests.support.daemon import DaemonProcess

ACTIONS = textwrap.dedent(
    """
    import asyncio, os

    async def hold(ctx):
        while not os.path.exists("release"):
            await asyncio.sleep(0.01)
        return "held"

    async def quick(ctx):
        return {"attempt": ctx.attempt}
    """
)


async def test_waiting_runs_start_in_order_and_cancel_while_waiting(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. With the only worker busy, two triggers are answered ``queued`` with no attempt.
    2. Cancelling the first while it waits ends it ``cancelled``, with no attempt.
    3. Once the worker is free the second gets it, its attempt 1 stored before it runs.
    Result: the holder and the second succeed; the daemon's pool is idle again."""
    d = daemon_factory(
        daemon="[workers]\nmax_concurrency = 1",
        jobs="""
[[jobs]]
name = "hold"
on = "never"
action = { type = "python", callable = "acts:hold" }

[[jobs]]
name = "quick"
on = "never"
action = { type = "python", callable = "acts:quick" }
""",
    )
    (d.base / "acts.py").write_text(ACTIONS)
    d.start()
    holder = await d.call("jobs.trigger", {"name": "hold"})
    assert holder["state"] == "running" and holder["attempts"] == 1
    first = await d.call("jobs.trigger", {"name": "quick"})
    second = await d.call("jobs.trigger", {"name": "quick"})
    for run in (first, second):
        assert run["state"] == "queued" and run["attempts"] == 0
    status = await d.call("status")
    assert status["queue_depth"] == 2 and status["workers"] == {"busy": 1, "max": 1}

    cancelled = await d.call("runs.cancel", {"id": first["id"]})
    assert cancelled["state"] == "cancelled"
    (d.base / "release").write_text("")
    ended = [d.wait_run(r["id"]) for r in (holder, first, second)]
    assert [r["state"] for r in ended] == ["succeeded", "cancelled", "succeeded"]
    assert ended[1]["attempts"] == [] and ended[2]["result"] == {"attempt": 1}
    assert [(a["n"], a["outcome"]) for a in ended[2]["attempts"]] == [(1, "ok")]
    async with asyncio.timeout(5):
        while (await d.call("status"))["workers"]["busy"]:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)
    assert (await d.call("status"))["queue_depth"] == 0
