"""The execution engine through the socket: runs, retries, fan-out, DLQ, idempotency (SPEC §3-5)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from automationd.errors import AdminError
from tests.support.daemon import DaemonProcess

ACTIONS = textwrap.dedent(
    """
    from automationd import FatalError, RetryableError

    async def ok(ctx):
        return {"target": ctx.target, "payload": ctx.payload}

    async def flaky(ctx):
        if ctx.attempt < 3:
            raise RetryableError(f"not yet ({ctx.attempt})")
        return {"attempt": ctx.attempt}

    async def fatal(ctx):
        raise FatalError("no such account")

    async def check4(ctx):
        return {"perform": True, "targets": ["a", "b", "c", "d"], "payload": {"from": "check"}}

    async def check_skip(ctx):
        return {"perform": False}

    FIXED = set()

    async def verify_c(ctx):
        return {"match": ctx.target != "c" or "c" in FIXED}

    async def fix_c(ctx):
        FIXED.add("c")
        return {}

    FAILS_LEFT = [3]

    async def fatal_thrice(ctx):
        if FAILS_LEFT[0] > 0:
            FAILS_LEFT[0] -= 1
            raise FatalError("not yet")
        return {}
    """
)

JOBS = """
[defaults]
retries = 3
backoff = { base = "10ms", max = "40ms", multiplier = 2.0, jitter = 0.1 }

[[jobs]]
name = "ok"
on = "never.*"
action = { type = "python", callable = "acts:ok" }

[[jobs]]
name = "flaky"
on = "never.*"
action = { type = "python", callable = "acts:flaky" }

[[jobs]]
name = "fatal"
on = "never.*"
action = { type = "python", callable = "acts:fatal" }

[[jobs]]
name = "fan"
on = "never.*"
check = { type = "python", callable = "acts:check4" }
action = { type = "python", callable = "acts:ok" }
verify = { type = "python", callable = "acts:verify_c" }

[[jobs]]
name = "skipper"
on = "never.*"
check = { type = "python", callable = "acts:check_skip" }
action = { type = "python", callable = "acts:ok" }

[[jobs]]
name = "fixer"
on = "never.*"
action = { type = "python", callable = "acts:fix_c" }

[[jobs]]
name = "thrice"
on = "never.*"
action = { type = "python", callable = "acts:fatal_thrice" }
"""


@pytest.fixture
def engine_daemon(daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    d = daemon_factory(jobs=JOBS)
    (d.base / "acts.py").write_text(ACTIONS)
    d.start()
    return d


async def test_trigger_runs_python_action_with_payload(engine_daemon: DaemonProcess) -> None:
    """A triggered run is durable when answered and succeeds with the action's result."""
    d = engine_daemon
    run = await d.call("jobs.trigger", {"name": "ok", "payload": {"sku": 7}})
    assert run["state"] in ("queued", "running", "succeeded")
    assert run["trigger"] == "manual"
    done = d.wait_run(run["id"])
    assert done["state"] == "succeeded"
    assert done["result"] == {"target": None, "payload": {"sku": 7}}
    assert [a["outcome"] for a in done["attempts"]] == ["ok"]


async def test_flaky_python_succeeds_on_third_attempt(engine_daemon: DaemonProcess) -> None:
    """Retryable errors are retried with backoff until the third attempt succeeds."""
    run = await engine_daemon.call("jobs.trigger", {"name": "flaky"})
    done = engine_daemon.wait_run(run["id"])
    assert done["state"] == "succeeded"
    assert [a["outcome"] for a in done["attempts"]] == ["retryable", "retryable", "ok"]
    assert done["result"] == {"attempt": 3}


async def test_fatal_python_goes_to_dlq_without_retry(engine_daemon: DaemonProcess) -> None:
    """A FatalError fails the run at once and parks the target in the dead-letter queue."""
    d = engine_daemon
    run = await d.call("jobs.trigger", {"name": "fatal"})
    done = d.wait_run(run["id"])
    assert done["state"] == "failed"
    assert done["error"] == {"kind": "fatal", "message": "no such account"}
    assert len(done["attempts"]) == 1
    dlq = await d.call("dlq.list", {"job": "fatal"})
    assert [e["run_id"] for e in dlq] == [run["id"]]
    assert (await d.call("status"))["dlq_size"] == 1


async def test_check_perform_verify_partial_then_retry_only_failed(
    engine_daemon: DaemonProcess,
) -> None:
    """1. check returns four targets; verify fails 'c' → partial with counts 3/1.
    2. runs.retry redoes only 'c' (no check) and, once fixed, succeeds.
    Result: the retry run has exactly one target, 'c'."""
    d = engine_daemon
    run = await d.call("jobs.trigger", {"name": "fan"})
    done = d.wait_run(run["id"])
    assert done["state"] == "partial"
    summary = (await d.call("runs.list", {"job": "fan"}))[0]
    assert summary["targets"] == {"total": 4, "succeeded": 3, "failed": 1, "pending": 0}
    states = {t["target"]: t["state"] for t in done["targets"]}
    assert states == {"a": "succeeded", "b": "succeeded", "c": "failed", "d": "succeeded"}
    assert done["payload"] == {"from": "check"}
    phases = [a["phase"] for a in done["attempts"]]
    assert phases.count("check") == 1 and phases.count("perform") == 4
    fixer = await d.call("jobs.trigger", {"name": "fixer"})
    d.wait_run(fixer["id"])
    retry = await d.call("runs.retry", {"id": run["id"]})
    assert retry["trigger"] == "retry"
    rdone = d.wait_run(retry["id"])
    assert rdone["state"] == "succeeded"
    assert [t["target"] for t in rdone["targets"]] == ["c"]
    assert "check" not in [a["phase"] for a in rdone["attempts"]]


async def test_check_can_skip(engine_daemon: DaemonProcess) -> None:
    """A check that says perform=false ends the run 'skipped' with no perform attempt."""
    run = await engine_daemon.call("jobs.trigger", {"name": "skipper"})
    done = engine_daemon.wait_run(run["id"])
    assert done["state"] == "skipped"
    assert [a["phase"] for a in done["attempts"]] == ["check"]


async def test_dlq_retry_and_purge(engine_daemon: DaemonProcess) -> None:
    """dlq.retry requeues entries as new runs and empties them; dlq.purge drops entries."""
    d = engine_daemon
    for _ in range(3):
        d.wait_run((await d.call("jobs.trigger", {"name": "fatal"}))["id"])
    entries = await d.call("dlq.list", {"job": "fatal"})
    assert len(entries) == 3
    assert await d.call("dlq.retry", {"id": entries[0]["id"]}) == {"requeued": 1}
    retried = [r for r in await d.call("runs.list", {"job": "fatal"}) if r["trigger"] == "retry"]
    assert len(retried) == 1 and retried[0]["origin"] == entries[0]["run_id"]
    d.wait_run(retried[0]["id"])  # fails again: a new entry replaces the retried one
    after = await d.call("dlq.list", {"job": "fatal"})
    assert entries[0]["id"] not in {e["id"] for e in after} and len(after) == 3
    assert await d.call("dlq.purge", {"job": "fatal"}) == {"purged": 3}
    assert await d.call("dlq.list", {}) == []
    with pytest.raises(AdminError) as ei:
        await d.call("dlq.retry", {})
    assert ei.value.code == "bad_request"


async def test_concurrent_dlq_retries_redo_each_entry_once(engine_daemon: DaemonProcess) -> None:
    """1. Three runs of 'thrice' fail (its later runs succeed): three dead letters.
    2. Eight dlq.retry {job: thrice} arrive at once, each on its own connection.
    Result: the answers requeue three in all, three retry runs exist (one per letter), and
    the DLQ is empty with dlq_size 0."""
    d = engine_daemon
    for _ in range(3):
        d.wait_run((await d.call("jobs.trigger", {"name": "thrice"}))["id"])
    async with asyncio.timeout(20):
        answers = await asyncio.gather(*(d.call("dlq.retry", {"job": "thrice"}) for _ in range(8)))
    assert sum(a["requeued"] for a in answers) == 3
    retried = [r for r in await d.call("runs.list", {"job": "thrice"}) if r["trigger"] == "retry"]
    assert len(retried) == 3 and len({r["origin"] for r in retried}) == 3
    for r in retried:
        assert d.wait_run(r["id"])["state"] == "succeeded"
    assert await d.call("dlq.list", {}) == [] and (await d.call("status"))["dlq_size"] == 0


async def test_runs_retry_takes_the_runs_dead_letters(engine_daemon: DaemonProcess) -> None:
    """1. A run of 'fatal' fails: one dead letter. 2. runs.retry redoes it (it fails again).
    Result: only the retry run's letter is left (the old one left with the retry, as with
    dlq.retry), dlq_size is 1, and a dlq.retry by job redoes the retry run only."""
    d = engine_daemon
    run = await d.call("jobs.trigger", {"name": "fatal"})
    d.wait_run(run["id"])
    retry = await d.call("runs.retry", {"id": run["id"]})
    d.wait_run(retry["id"])
    letters = await d.call("dlq.list", {})
    assert [e["run_id"] for e in letters] == [retry["id"]]
    assert (await d.call("status"))["dlq_size"] == 1
    assert await d.call("dlq.retry", {"job": "fatal"}) == {"requeued": 1}
    origins = [r["origin"] for r in await d.call("runs.list", {"job": "fatal"})]
    assert origins.count(run["id"]) == 1 and origins.count(retry["id"]) == 1


async def test_concurrent_triggers_with_one_key_make_one_run(engine_daemon: DaemonProcess) -> None:
    """20 concurrent triggers with the same idempotency key create exactly one run."""
    d = engine_daemon

    async def one() -> dict[str, object]:
        return dict(await d.call("jobs.trigger", {"name": "ok", "idempotency_key": "k-1"}))

    async with asyncio.timeout(10):
        results = await asyncio.gather(*(one() for _ in range(20)))
    ids = {r["id"] for r in results}
    assert len(ids) == 1
    assert sum(1 for r in results if r.get("existing")) == 19
    runs = await d.call("runs.list", {"job": "ok"})
    assert [r["id"] for r in runs] == list(ids)


async def test_unknown_job_and_bad_args(engine_daemon: DaemonProcess) -> None:
    """Unknown jobs answer not_found; bad argument types answer bad_request."""
    d = engine_daemon
    with pytest.raises(AdminError) as ei:
        await d.call("jobs.trigger", {"name": "nope"})
    assert ei.value.code == "not_found"
    with pytest.raises(AdminError) as ei:
        await d.call("runs.list", {"limit": 5000})
    assert ei.value.code == "bad_request"
    with pytest.raises(AdminError) as ei:
        await d.call("runs.get", {"id": "01NOPE"})
    assert ei.value.code == "not_found"


async def test_cancel_dry_run_and_logs(daemon_factory: Callable[..., DaemonProcess]) -> None:
    """1. runs.cancel ends a running exec run 'cancelled' and kills its child; cancelling an
    ended run answers conflict.
    2. dry_run runs only the check and reports its targets as a stored preview run (its
       plan), performing nothing.
    3. runs.logs returns the captured stdout and stderr of an attempt."""
    d = daemon_factory(
        jobs="""
[[jobs]]
name = "sleeper"
on = "never"
action = { type = "exec", argv = ["sh", "-c", "echo $$ > pid.txt; exec sleep 30"] }

[[jobs]]
name = "fan"
on = "never"
check = { type = "python", callable = "acts:check4" }
action = { type = "python", callable = "acts:ok" }

[[jobs]]
name = "talker"
on = "never"
action = { type = "exec", argv = ["sh", "-c", "echo out-line; echo err-line >&2"] }
"""
    )
    (d.base / "acts.py").write_text(ACTIONS)
    d.start()
    run = await d.call("jobs.trigger", {"name": "sleeper"})
    pid_file = d.base / "pid.txt"
    async with asyncio.timeout(10):
        while True:
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.02)
    pid = int(pid_file.read_text())
    cancelled = await d.call("runs.cancel", {"id": run["id"]})
    assert cancelled["state"] == "cancelled"
    await asyncio.sleep(0.3)
    assert not _alive(pid), "cancelling a run kills its process group"
    with pytest.raises(AdminError) as ei:
        await d.call("runs.cancel", {"id": run["id"]})
    assert ei.value.code == "conflict"

    dry = await d.call("jobs.trigger", {"name": "fan", "dry_run": True})
    assert (dry["state"], dry["trigger"]) == ("previewed", "preview")
    assert dry["plan"]["perform"] is True and dry["plan"]["targets"] == ["a", "b", "c", "d"]
    assert [r["id"] for r in await d.call("runs.list", {"job": "fan"})] == [dry["id"]]
    assert [a["phase"] for a in (await d.call("runs.get", {"id": dry["id"]}))["attempts"]] == [
        "check"
    ]

    talk = await d.call("jobs.trigger", {"name": "talker"})
    d.wait_run(talk["id"])
    logs = await d.call("runs.logs", {"id": talk["id"]})
    got = {(chunk["stream"], chunk["text"].strip()) for chunk in logs}
    assert got == {("stdout", "out-line"), ("stderr", "err-line")}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split()[2] != "Z"
