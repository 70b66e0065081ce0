"""The engine while the store refuses writes: a run's end is retried by the writer until the
store is healthy again, never left in memory or lost, and the action never runs twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from structlog.testing import capture_logs

from automationd.actions.base import ActionContext
from automationd.core.runstate import RunState
from automationd.obs.metrics import Metrics
from tests.support.engine import engine_rig, flaky


def _succeeded(metrics: Metrics, job: str) -> float | None:
    return metrics.registry.get_sample_value(
        "automationd_runs_total", {"job": job, "state": "succeeded"}
    )


async def _until(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    """Wait for ``cond``, looking every 5 ms, for at most ``limit_s``."""
    for _ in range(int(limit_s / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def test_a_run_whose_end_write_fails_ends_once_the_store_is_healthy(
    tmp_path: Path,
) -> None:
    """1. A run's action starts (attempt 1 durable) and waits.
    2. The store starts failing every batch (a full disk); the action returns.
    3. The run's end is refused several times: the run has left memory, the store says it
       is unhealthy, the stored run is still ``running`` and nothing reported it yet.
    4. The store heals.
    Result: with no restart the stored run is ``succeeded`` with its one ``ok`` attempt and
    its ``run.succeeded`` event, reported once, and the action ran once."""
    async with asyncio.timeout(15), engine_rig(tmp_path) as r:
        release = asyncio.Event()
        calls: list[int] = []

        async def waits(ctx: ActionContext) -> str:
            calls.append(ctx.attempt)
            await release.wait()
            return "done"

        job = r.job("slowpoke", waits)
        run_id = (await r.trigger(job))["id"]
        await _until(lambda: bool(calls))
        committer = flaky(r.store)
        committer.failing = True
        with capture_logs() as logs:
            release.set()
            await _until(lambda: run_id not in r.launcher.live and committer.failed >= 3)
            assert not r.store.healthy and "disk full" in (r.store.health_reason or "")
            stored = await r.store.run(run_id)  # reads still work
            assert stored is not None and stored.state is RunState.RUNNING
            assert _succeeded(r.metrics, job.name) is None
            committer.failing = False
            async with asyncio.timeout(5):
                await r.store.wait_healthy()
            run = await r.settled(run_id)
        assert (run.state, run.result, run.attempts) == (RunState.SUCCEEDED, "done", 1)
        attempts = await r.store.attempts(run_id)
        assert [(a.n, a.outcome) for a in attempts] == [(1, "ok")]
        events = await r.store.events(since=None, until=None, limit=None, newest_first=False)
        assert [e.name for e in events] == ["run.succeeded"]
        assert _succeeded(r.metrics, job.name) == 1
        assert calls == [1]
        names = [e["event"] for e in logs]
        assert names.count("store.write_failed") == 1 and "store.write_recovered" in names
