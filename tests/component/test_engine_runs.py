"""A run's life in its own task, against a real SQLite store: launch, worker slots, retries,
timeouts, cancellation before the first step, and the run's task and context as the action
sees them."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import Any

from automationd.actions.base import ActionContext
from automationd.config.model import Backoff, PythonAction
from automationd.core.runstate import RunState
from automationd.errors import RetryableError
from automationd.records import Trigger
from automationd.store.api import RunQuery
from tests.support.engine import engine_rig

FAST = Backoff(base=0.001, max=0.001, multiplier=1.0, jitter=0.0)
SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("SEEN", default="")


async def noop(ctx: ActionContext) -> None:
    return None


async def fails_once(ctx: ActionContext) -> str:
    if ctx.attempt == 1:
        raise RetryableError("not yet")
    return "ok"


async def hangs(ctx: ActionContext) -> None:
    await asyncio.sleep(3600)


async def who_am_i(ctx: ActionContext) -> dict[str, Any]:
    """The task and context an action runs in, as it sees them."""
    before = SEEN.get()
    SEEN.set(ctx.run_id)  # must not leak into another run's context
    task = asyncio.current_task()
    assert task is not None
    return {"task": task.get_name(), "before": before}


async def test_a_run_ends_in_its_own_task_with_its_event(tmp_path: Path) -> None:
    """A no-op run is answered running with attempt 1 durable, ends ``succeeded`` in a task
    named ``run:<id>``, and its ``run.succeeded`` event is stored with its end."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        answer = await r.trigger(r.job("quick", who_am_i))
        run_id = answer["id"]
        assert (answer["state"], answer["attempts"]) == ("running", 1)
        run = await r.settled(run_id)
        assert (run.state, run.attempts, run.targets_succeeded) == (RunState.SUCCEEDED, 1, 1)
        assert run.result == {"task": f"run:{run_id}", "before": ""}
        assert run.started_at is not None and run.finished_at is not None
        assert run.started_at <= run.finished_at
        events = await r.store.events(since=None, until=None, limit=None, newest_first=False)
        assert [(e.name, e.payload, e.depth) for e in events] == [
            ("run.succeeded", {"job": "quick", "run_id": run_id, "state": "succeeded"}, 1)
        ]
        assert r.pool.busy == 0 and not r.launcher.live


async def test_each_run_has_a_context_of_its_own(tmp_path: Path) -> None:
    """A context variable one run's action sets is not seen by the next run's action."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        job = r.job("ctx", who_am_i)
        first = await r.settled((await r.trigger(job))["id"])
        second = await r.settled((await r.trigger(job))["id"])
        assert first.result["before"] == "" and second.result["before"] == ""
        assert SEEN.get() == ""  # nor by the test's own context


async def test_a_first_attempt_that_fails_is_retried(tmp_path: Path) -> None:
    """A retryable failure of attempt 1 is followed by a backoff and attempt 2, both recorded."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        run_id = (await r.trigger(r.job("flaky", fails_once, retries=2, backoff=FAST)))["id"]
        run = await r.settled(run_id)
        assert (run.state, run.attempts, run.result) == (RunState.SUCCEEDED, 2, "ok")
        attempts = await r.store.attempts(run_id)
        assert [(a.n, a.outcome) for a in attempts] == [(1, "retryable"), (2, "ok")]
        assert r.pool.busy == 0


async def test_retries_n_means_n_attempts_after_the_first(tmp_path: Path) -> None:
    """``retries = 2`` on an action that always fails retryably gives 3 attempts (the first,
    opened with the run, and 2 retries), then the dead-letter queue; with ``retries = 0`` one."""

    async def always_fails(ctx: ActionContext) -> None:
        raise RetryableError("down")

    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        for retries, expected in ((2, 3), (0, 1)):
            job = r.job(f"down{retries}", always_fails, retries=retries, backoff=FAST)
            run = await r.settled((await r.trigger(job))["id"])
            assert (run.state, run.attempts) == (RunState.FAILED, expected)
            outcomes = [a.outcome for a in await r.store.attempts(run.id)]
            assert outcomes == ["retryable"] * expected
        assert [e.job for e in await r.store.dlq(job=None, limit=10)] == ["down0", "down2"]


async def test_an_attempt_that_hangs_times_out(tmp_path: Path) -> None:
    """A callable that never returns ends its attempt ``timeout`` after the job's timeout."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        run_id = (await r.trigger(r.job("hang", hangs, retries=0, timeout=0.05)))["id"]
        run = await r.settled(run_id)
        assert run.state is RunState.FAILED
        assert run.error is not None and run.error.kind.value == "timeout"
        assert r.pool.busy == 0


async def test_cancel_before_the_tasks_first_step(tmp_path: Path) -> None:
    """Cancelled after its launch is durable but before its task took a step, the run still
    ends ``cancelled``, its opened first attempt is closed as not run, it leaves memory and
    frees its worker slot."""
    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        live = r.launcher.prepare(r.job("hang2", hangs), trigger=Trigger.MANUAL)
        started: list[bool] = []

        def then(exc: BaseException | None) -> None:
            started.append(live.started)
            r.launcher.cancel(live.id)

        r.launcher.launch([live], then=then)
        run = await r.settled(live.id)
        assert started == [False]
        assert run.state is RunState.CANCELLED and run.reason == "cancelled by request"
        attempts = await r.store.attempts(live.id)
        assert [(a.n, a.outcome, a.error) for a in attempts] == [(1, "cancelled", "not run")]
        assert r.pool.busy == 0 and not r.launcher.live


async def test_no_free_worker_means_the_run_waits_for_one(tmp_path: Path) -> None:
    """With every worker busy a new run is answered ``queued`` with no attempt; it gets the
    worker the moment the blocking run ends, and then succeeds."""
    async with asyncio.timeout(10), engine_rig(tmp_path, workers=1) as r:
        blocker = (await r.trigger(r.job("hold", hangs)))["id"]
        answer = await r.trigger(r.job("quick", noop))
        quick = answer["id"]
        assert (answer["state"], answer["attempts"]) == ("queued", 0)
        for _ in range(100):  # its task takes its first step and joins the pool's line
            if r.pool.waiting:
                break
            await asyncio.sleep(0.001)
        assert r.pool.waiting == 1 and quick in r.launcher.live
        assert (await r.store.attempts(quick)) == []
        r.launcher.cancel(blocker)
        run = await r.settled(quick)
        assert (run.state, run.attempts) == (RunState.SUCCEEDED, 1)
        assert (await r.settled(blocker)).state is RunState.CANCELLED
        assert r.pool.busy == 0


async def test_a_previews_check_runs_in_the_runs_own_task(tmp_path: Path) -> None:
    """A dry run is a stored ``preview`` run: its check is called in the run's own task
    (``run:<id>``) with a context of its own, never in the caller's (an admin connection's)
    task, and the run ends ``previewed`` with the check's targets in its plan."""
    caller = asyncio.current_task()
    seen: list[tuple[asyncio.Task[Any] | None, str]] = []

    async def check(ctx: ActionContext) -> dict[str, Any]:
        seen.append((asyncio.current_task(), SEEN.get()))
        SEEN.set("check")
        return {"targets": [1, 2]}

    async with asyncio.timeout(10), engine_rig(tmp_path) as r:
        job = r.job("dry", noop, check=PythonAction(callable="t:check", fn=check))
        run, existing = await r.intake.preview(job, payload={"p": 1})
        assert not existing
        assert run.state is RunState.PREVIEWED and run.trigger.value == "preview"
        assert run.plan is not None and run.plan["targets"] == [1, 2]
        ((task, before),) = seen
        assert task is not None and task is not caller and task.get_name() == f"run:{run.id}"
        assert before == "" and SEEN.get() == ""
        stored = await r.store.runs(RunQuery())
        assert [x.id for x in stored] == [run.id]
