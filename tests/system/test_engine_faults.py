"""User code that used to break the engine, through the real daemon (issue 10): actions
that capture their task (their own timeout, a TaskGroup, ``current_task``), actions that
take the daemon down (SIGKILL, ``os._exit``) under a supervisor that restarts it, and the
idempotent answer as the run is now."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.admin_client import AdminClient
from tests.support.daemon import DaemonProcess

ACTS = '''
import asyncio
import os
import signal


async def own_timeout(ctx):
    """Guards its own await and handles the timeout: the engine must not notice."""
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(1)
    except TimeoutError:
        return {"timed_out": True}
    return {"timed_out": False}


async def task_group(ctx):
    async def child(i):
        await asyncio.sleep(0.01)
        return i * 2

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(child(i)) for i in range(3)]
    return [t.result() for t in tasks]


async def own_task(ctx):
    task = asyncio.current_task()
    assert task is not None and task.get_name() == f"run:{ctx.run_id}", task
    await asyncio.sleep(0)
    assert asyncio.current_task() is task
    return task.get_name()


async def noop(ctx):
    return "ok"


async def sigkill(ctx):
    with open("executions.txt", "a") as f:
        f.write(f"{ctx.run_id} {ctx.attempt} {os.getpid()}\\n")
    await asyncio.sleep(0)
    os.kill(os.getpid(), signal.SIGKILL)


async def hard_exit(ctx):
    with open("executions.txt", "a") as f:
        f.write(f"{ctx.run_id} {ctx.attempt} {os.getpid()}\\n")
    os._exit(1)  # no await: the daemon dies inside the action's first step
'''

JOBS = """
[[jobs]]
name = "own_timeout"
on = "never"
retries = 0
action = { type = "python", callable = "acts:own_timeout" }

[[jobs]]
name = "task_group"
on = "never"
retries = 0
action = { type = "python", callable = "acts:task_group" }

[[jobs]]
name = "own_task"
on = "never"
retries = 0
action = { type = "python", callable = "acts:own_task" }

[[jobs]]
name = "noop"
on = "never"
action = { type = "python", callable = "acts:noop" }

[[jobs]]
name = "sigkill"
on = "never"
retries = 2
backoff = { base = "10ms", max = "10ms", jitter = 0.0 }
action = { type = "python", callable = "acts:sigkill" }

[[jobs]]
name = "hard_exit"
on = "never"
retries = 2
backoff = { base = "10ms", max = "10ms", jitter = 0.0 }
action = { type = "python", callable = "acts:hard_exit" }
"""


def _daemon(make: Callable[..., DaemonProcess]) -> DaemonProcess:
    d = make(jobs=JOBS)
    (d.base / "acts.py").write_text(ACTS)
    return d


async def _healthz(d: DaemonProcess) -> int:
    ready = [e for e in d.log_events() if e.get("event") == "daemon.ready"][-1]
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.get(f"http://{ready['metrics']}/healthz") as resp,
    ):
        return resp.status


async def test_actions_that_capture_their_task_leave_the_daemon_healthy(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Three times each: an action with its own ``asyncio.timeout`` that it handles, an
       action running a ``TaskGroup``, and an action checking that ``current_task()`` is its
       run's own task (``run:<id>``).
    2. Then /healthz, and a later plain trigger.
    Result: every run succeeded with the value its action returned, each in a task of its
    own; /healthz is 200 and the later trigger succeeds."""
    d = _daemon(daemon_factory)
    d.start()
    expected: dict[str, Callable[[str], Any]] = {
        "own_timeout": lambda rid: {"timed_out": True},
        "task_group": lambda rid: [0, 2, 4],
        "own_task": lambda rid: f"run:{rid}",
    }
    for _ in range(3):
        for job, value in expected.items():
            run = await d.call("jobs.trigger", {"name": job})
            done = await asyncio.to_thread(d.wait_run, run["id"])
            assert (done["state"], done["result"]) == ("succeeded", value(run["id"])), done
            assert [a["outcome"] for a in done["attempts"]] == ["ok"]
    assert await _healthz(d) == 200
    later = await d.call("jobs.trigger", {"name": "noop"})
    assert (await asyncio.to_thread(d.wait_run, later["id"]))["state"] == "succeeded"
    status = await d.call("status")
    assert status["runs_in_flight"] == 0
    assert not [e for e in d.log_events() if e.get("event") == "store.unhealthy"]
    assert d.stop() == 0


async def _trigger_dying(d: DaemonProcess, job: str) -> str | None:
    """Trigger ``job``, whose action kills the daemon; the answer may not make it out."""
    try:
        async with AdminClient(d.socket, timeout=10) as c:
            run = await c.call("jobs.trigger", {"name": job})
            return str(run["id"])
    except (OSError, EOFError, ValueError):
        return None


def _restart_until_it_stays_up(d: DaemonProcess, *, starts: int, settle_s: float = 1.5) -> int:
    """What systemd's ``Restart=`` does: start the daemon again each time it dies; returns
    the number of deaths once it has stayed up ``settle_s`` after a start."""
    assert d.proc is not None
    deaths = 0
    for _ in range(starts):
        d.proc.wait(15)  # it dies in its action (or has died already)
        deaths += 1
        d.start(wait=False)
        try:
            d.wait_ready(15)
        except RuntimeError:  # it died again before answering: recovery ran the action
            continue
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and d.proc.poll() is None:
            time.sleep(0.05)
        if d.proc.poll() is None:
            return deaths
    raise AssertionError(f"still dying after {starts} starts:\n{d.logs()[-3000:]}")


async def _crash_loop_ends_in_the_dlq(d: DaemonProcess, job: str) -> None:
    d.start()
    run_id = await _trigger_dying(d, job)
    deaths = await asyncio.to_thread(_restart_until_it_stays_up, d, starts=8)
    lines = (d.base / "executions.txt").read_text().split("\n")[:-1]
    if run_id is None:  # the answer was lost with the daemon; the run was not
        run_id = lines[0].split()[0]
    assert deaths == 3  # attempt 1, 2, 3 (retries = 2): each took the daemon down
    assert [line.split()[:2] for line in lines] == [[run_id, str(n)] for n in (1, 2, 3)]
    assert len({line.split()[2] for line in lines}) == 3  # three daemons, three pids
    run = await d.call("runs.get", {"id": run_id})
    assert run["state"] == "failed" and run["error"]["kind"] == "interrupted", run
    assert [a["outcome"] for a in run["attempts"]] == ["interrupted"] * 3
    letters = await d.call("dlq.list", {"job": job})
    assert [e["run_id"] for e in letters] == [run_id]
    assert await _healthz(d) == 200
    later = await d.call("jobs.trigger", {"name": "noop"})
    assert (await asyncio.to_thread(d.wait_run, later["id"]))["state"] == "succeeded"
    assert d.stop() == 0


async def test_an_action_that_sigkills_the_daemon_ends_in_the_dlq(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A job (retries = 2) whose action SIGKILLs the daemon is triggered.
    2. The test restarts the daemon each time it dies, as systemd would.
    Result: after three deaths (one per allowed attempt) the run is ``failed`` in the DLQ,
    every attempt on record ``interrupted``, and the daemon stays up, healthy."""
    await _crash_loop_ends_in_the_dlq(_daemon(daemon_factory), "sigkill")


async def test_a_synchronous_os_exit_in_an_action_ends_in_the_dlq(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """The same with an action that calls ``os._exit(1)`` before its first await (a C
    crash, a watchdog kill of a blocking handler): it does not loop forever."""
    await _crash_loop_ends_in_the_dlq(_daemon(daemon_factory), "hard_exit")


async def test_a_known_idempotency_key_answers_the_run_as_it_is_now(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Trigger with a key; the answer is the new run (no ``existing``).
    2. Once it succeeded, trigger again with the key; restart; trigger again.
    Result: both repeats answer the same run, ``succeeded`` with its result and
    ``existing: true``; no second run was made."""
    d = _daemon(daemon_factory)
    d.start()
    first = await d.call("jobs.trigger", {"name": "noop", "idempotency_key": "k-1"})
    assert "existing" not in first and first["state"] in ("queued", "running")
    await asyncio.to_thread(d.wait_run, first["id"])
    again = await d.call("jobs.trigger", {"name": "noop", "idempotency_key": "k-1"})
    assert (again["id"], again["state"], again["result"]) == (first["id"], "succeeded", "ok")
    assert again["existing"] is True and again["finished_at"] is not None
    assert d.stop() == 0
    d.start()
    later = await d.call("jobs.trigger", {"name": "noop", "idempotency_key": "k-1"})
    assert (later["id"], later["state"], later["existing"]) == (first["id"], "succeeded", True)
    assert [r["id"] for r in await d.call("runs.list", {"job": "noop"})] == [first["id"]]
    assert d.stop() == 0
