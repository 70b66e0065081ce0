"""Nothing acknowledged is lost or redone: kill -9, restart, graceful SIGTERM (SPEC §1, §4)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

from tests.support.admin_client import AdminClient
from tests.support.daemon import DaemonProcess

NOOP = "async def noop(ctx):\n    return {}\n"


async def test_kill9_after_300_acknowledged_triggers_loses_none(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Pipeline 300 triggers and collect their acknowledgements.
    2. kill -9 the daemon right after the last answer.
    3. Restart it.
    Result: all 300 runs exist exactly once and succeed."""
    d = daemon_factory(
        jobs="""
[[jobs]]
name = "noop"
on = "never"
action = { type = "python", callable = "acts:noop" }
"""
    )
    (d.base / "acts.py").write_text(NOOP)
    d.start()
    async with AdminClient(d.socket, timeout=15) as c:
        replies = await c.pipeline([("jobs.trigger", {"name": "noop"})] * 300)
    d.kill9()
    ids = [r["result"]["id"] for r in replies]
    assert len(set(ids)) == 300
    d.start()
    deadline = time.monotonic() + 20
    while True:
        runs = await d.call("runs.list", {"job": "noop", "limit": 1000})
        if all(r["state"] == "succeeded" for r in runs) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert sorted(r["id"] for r in runs) == sorted(ids)
    assert {r["state"] for r in runs} == {"succeeded"}
    assert d.stop() == 0


async def test_kill9_mid_fanout_resumes_without_redoing_finished_targets(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A 5-target exec fan-out where target 3 hangs on its first attempt.
    2. Once the other 4 succeeded, kill -9 the daemon.
    3. Restart.
    Result: targets 1,2,4,5 ran once, 3 twice; the first attempt of 3 is 'interrupted'; the
    run succeeds and the orphaned sleeper from the dead daemon was killed."""
    d = daemon_factory(
        jobs="""
[[jobs]]
name = "fan"
on = "never"
targets = [1, 2, 3, 4, 5]
retries = 2
action = { type = "exec", argv = ["sh", "-c", '''
echo "$AUTOMATIOND_TARGET" >> done.txt
if [ "$AUTOMATIOND_TARGET" = 3 ] && [ ! -e slow.marker ]; then
  echo $$ > slow.marker; exec sleep 60
fi
'''] }
"""
    )
    d.start()
    run = await d.call("jobs.trigger", {"name": "fan"})
    deadline = time.monotonic() + 10
    while True:
        got = await d.call("runs.get", {"id": run["id"]})
        if (
            sum(t["state"] == "succeeded" for t in got["targets"]) == 4
            and (d.base / "slow.marker").exists()
        ):
            break
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.05)
    sleeper = int((d.base / "slow.marker").read_text())
    d.kill9()
    d.start()
    done = d.wait_run(run["id"])
    assert done["state"] == "succeeded"
    lines = (d.base / "done.txt").read_text().split()
    assert sorted(lines) == ["1", "2", "3", "3", "4", "5"]
    outcomes = [a["outcome"] for a in done["attempts"] if a["target"] == 3]
    assert outcomes == ["interrupted", "ok"]
    await asyncio.sleep(0.2)
    assert not _alive(sleeper), "the dead daemon's child must not be left running"
    assert d.stop() == 0


async def test_sigterm_lets_running_attempt_finish(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """SIGTERM with a 1 s run in flight: the run finishes 'succeeded' and the exit code is 0."""
    d = daemon_factory(
        jobs="""
[[jobs]]
name = "short"
on = "never"
action = { type = "exec", argv = ["sleep", "1"] }
"""
    )
    d.start()
    run = await d.call("jobs.trigger", {"name": "short"})
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 4
    d.start()
    assert (await d.call("runs.get", {"id": run["id"]}))["state"] == "succeeded"
    assert d.stop() == 0


async def test_sigterm_past_shutdown_timeout_cancels_and_resumes(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A run longer than shutdown_timeout (1 s) is in flight; SIGTERM.
    2. The daemon exits 0 within the timeout (plus slack).
    3. Restart.
    Result: the run resumes under the same id (interrupted attempt, then a new one)."""
    d = daemon_factory(
        daemon='shutdown_timeout = "1s"',
        jobs="""
[[jobs]]
name = "long"
on = "never"
action = { type = "exec", argv = ["sh", "-c",
  "if [ -e again ]; then exit 0; fi; touch again; sleep 30"] }
""",
    )
    d.start()
    run = await d.call("jobs.trigger", {"name": "long"})
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 3.0
    d.start()
    done = d.wait_run(run["id"])
    assert done["state"] == "succeeded"
    assert [a["outcome"] for a in done["attempts"]] == ["interrupted", "ok"]
    assert d.stop() == 0


async def test_idle_sigterm_exits_fast(daemon_factory: Callable[..., DaemonProcess]) -> None:
    """An idle daemon exits 0 within 1 s of SIGTERM."""
    d = daemon_factory()
    d.start()
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


async def test_kill9_mid_python_attempt_records_interrupted(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A one-action python run (no row of its own for its first attempt) hangs.
    2. kill -9 while it is in flight; restart.
    Result: the run resumes under the same id; attempts read ['interrupted', 'ok']."""
    d = daemon_factory(
        jobs="""
[[jobs]]
name = "hang"
on = "never"
action = { type = "python", callable = "hangacts:hang_once" }
"""
    )
    (d.base / "hangacts.py").write_text(
        "import asyncio, pathlib\n"
        "async def hang_once(ctx):\n"
        "    marker = pathlib.Path('hung.marker')\n"
        "    if not marker.exists():\n"
        "        marker.write_text('x')\n"
        "        await asyncio.sleep(60)\n"
        "    return {'attempt': ctx.attempt}\n"
    )
    d.start()
    run = await d.call("jobs.trigger", {"name": "hang"})
    deadline = time.monotonic() + 10
    while not (d.base / "hung.marker").exists():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the attempt's start is durable well within this
    d.kill9()
    d.start()
    done = d.wait_run(run["id"])
    assert done["state"] == "succeeded"
    assert [a["outcome"] for a in done["attempts"]] == ["interrupted", "ok"]
    assert done["result"] == {"attempt": 2}
    assert d.stop() == 0
