"""Previews, apply, stale plans and rollback through the real daemon (SPEC §7.2, issue 15).

The actions count what they do in files beside the daemon's config: the check reads its
plan from ``source.json``, every perform call appends its target to ``performed.txt`` and
every undo call to ``undone.txt`` (so "no perform call happened" is counted by the action).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from automationd.errors import AdminError
from tests.support.daemon import DaemonProcess

ACTIONS = textwrap.dedent(
    """
    import asyncio, json, os
    from automationd import FatalError

    def _note(name, text):
        with open(name, "a") as f:
            f.write(text + "\\n")

    async def check_from_file(ctx):
        if os.path.exists("check_blocks"):
            os.remove("check_blocks")
            _note("check_started", "yes")
            await asyncio.sleep(60)
        with open("source.json") as f:
            plan = json.load(f)
        return {"perform": True, "targets": plan["targets"], "payload": plan["payload"]}

    async def perform(ctx):
        _note("performed.txt", json.dumps(ctx.target))
        return {"target": ctx.target, "payload": ctx.payload}

    async def perform_some_fail(ctx):
        if ctx.target in ("t2", "t4"):
            raise FatalError(f"{ctx.target}: rejected by the partner")
        _note("performed.txt", json.dumps(ctx.target))
        return {"done": ctx.target}

    async def undo(ctx):
        if ctx.target == "t3" and os.path.exists("undo_t3_fails"):
            os.remove("undo_t3_fails")
            raise FatalError("t3: cannot undo yet")
        if ctx.target == "t3" and os.path.exists("undo_t3_blocks"):
            os.remove("undo_t3_blocks")
            _note("undo_t3_started", "yes")
            await asyncio.sleep(60)
        _note("undone.txt", ctx.target)
        return {"undone": ctx.target}

    async def retry_forever(ctx):
        raise RuntimeError("partner down")
    """
)

JOBS = """
[defaults]
retries = 1
backoff = { base = "10ms", max = "20ms", multiplier = 2.0, jitter = 0.0 }

[[jobs]]
name = "prices"
on = "never"
check = { type = "python", callable = "plans:check_from_file" }
action = { type = "python", callable = "plans:perform" }

[[jobs]]
name = "quick"
on = "never"
preview_ttl = "300ms"
check = { type = "python", callable = "plans:check_from_file" }
action = { type = "python", callable = "plans:perform" }

[[jobs]]
name = "static"
on = "never"
targets = ["a", "b"]
action = { type = "python", callable = "plans:perform" }

[[jobs]]
name = "fanout"
on = "never"
targets = ["t1", "t2", "t3", "t4", "t5"]
action = { type = "python", callable = "plans:perform_some_fail" }
undo = { type = "python", callable = "plans:undo" }

[[jobs]]
name = "auto"
on = "never"
on_failure = "rollback"
targets = ["t1", "t2", "t3", "t4", "t5"]
action = { type = "python", callable = "plans:perform_some_fail" }
undo = { type = "python", callable = "plans:undo" }

[[jobs]]
name = "flaky"
on = "never"
action = { type = "python", callable = "plans:retry_forever" }
"""

ENDS = ("succeeded", "partial", "failed", "skipped", "cancelled", "previewed", "stale")
SOURCE = {"targets": ["sku-1", "sku-2", "sku-3"], "payload": {"rule": "10% off"}}


@pytest.fixture
def plans_daemon(daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    d = daemon_factory(jobs=JOBS)
    (d.base / "plans.py").write_text(ACTIONS)
    _write_source(d, SOURCE)
    d.start()
    return d


def _write_source(d: DaemonProcess, value: dict[str, Any]) -> None:
    (d.base / "source.json").write_text(json.dumps(value))


def _lines(d: DaemonProcess, name: str) -> list[str]:
    path = d.base / name
    return path.read_text().splitlines() if path.exists() else []


def _performed(d: DaemonProcess) -> list[Any]:
    return [json.loads(x) for x in _lines(d, "performed.txt")]


async def _call_or_error(d: DaemonProcess, cmd: str, args: dict[str, Any]) -> Any:
    try:
        return await d.call(cmd, args)
    except Exception as exc:  # the caller asserts which it expected
        return exc


async def _wait_for_file(path: Path, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not path.exists():  # noqa: ASYNC110, ASYNC240 - the daemon writes it: no event
            await asyncio.sleep(0.02)


async def test_preview_then_apply_performs_exactly_the_previewed_targets(
    plans_daemon: DaemonProcess,
) -> None:
    """1. A dry run is a stored run: trigger preview, state previewed, its plan shown, only
    the check ran. 2. Applying it with the check unchanged performs exactly the previewed
    targets with the previewed payload. 3. Applying it again answers that same run.
    Result: one apply run, three perform calls."""
    d = plans_daemon
    async with asyncio.timeout(30):
        preview = await d.call("jobs.trigger", {"name": "prices", "dry_run": True})
        assert (preview["trigger"], preview["state"]) == ("preview", "previewed")
        plan = preview["plan"]
        assert plan["targets"] == SOURCE["targets"] and plan["payload"] == SOURCE["payload"]
        assert len(plan["hash"]) == 64
        stored = await d.call("runs.get", {"id": preview["id"]})
        assert stored["plan"] == plan and stored["state"] == "previewed"
        assert [a["phase"] for a in stored["attempts"]] == ["check"]
        assert _performed(d) == []

        applied = await d.call("jobs.trigger", {"name": "prices", "apply": preview["id"]})
        assert applied["trigger"] == "apply" and applied["origin"] == preview["id"]
        done = d.wait_run(applied["id"], ENDS)
        assert done["state"] == "succeeded", done
        assert sorted(_performed(d)) == SOURCE["targets"]
        assert sorted(t["target"] for t in done["targets"]) == SOURCE["targets"]
        assert {t["result"]["payload"]["rule"] for t in done["targets"]} == {"10% off"}
        assert done["plan"]["hash"] == plan["hash"]

        again = await d.call("jobs.trigger", {"apply": preview["id"]})
        assert again["id"] == applied["id"] and again["existing"] is True
        applies = await d.call("runs.list", {"job": "prices", "trigger": "apply"})
        assert [r["id"] for r in applies] == [applied["id"]]
        assert len(_performed(d)) == 3


async def test_apply_is_stale_when_the_checks_source_changed(plans_daemon: DaemonProcess) -> None:
    """The file the check reads changes between preview and apply: the apply ends stale
    with error kind stale naming the targets added and removed and the payload change, and
    the action counted zero perform calls."""
    d = plans_daemon
    async with asyncio.timeout(30):
        preview = await d.call("jobs.trigger", {"name": "prices", "dry_run": True})
        _write_source(d, {"targets": ["sku-1", "sku-3", "sku-9"], "payload": {"rule": "20%"}})
        applied = await d.call("jobs.trigger", {"name": "prices", "apply": preview["id"]})
        assert applied["state"] == "stale", applied  # answered once it has decided
        err = applied["error"]
        assert err["kind"] == "stale"
        assert 'targets added: "sku-9"' in err["message"]
        assert 'targets removed: "sku-2"' in err["message"]
        assert "payload changed" in err["message"]
        run = await d.call("runs.get", {"id": applied["id"]})
        assert [a["phase"] for a in run["attempts"]] == ["check"]
        assert run["targets"] == [] and run["plan"]["hash"] != preview["plan"]["hash"]
        assert _performed(d) == []
        again = await d.call("jobs.trigger", {"apply": preview["id"]})
        assert (again["id"], again["state"], again["existing"]) == (applied["id"], "stale", True)


async def test_apply_is_stale_when_the_job_definition_changed(plans_daemon: DaemonProcess) -> None:
    """A job removed and added again with another definition makes its preview stale: the
    apply names the definition change and performs nothing (a job without a check: its plan
    is its static targets and the given payload)."""
    d = plans_daemon
    job = {
        "name": "edited",
        "on": "never",
        "targets": ["x", "y"],
        "action": {"type": "python", "callable": "plans:perform"},
    }
    async with asyncio.timeout(30):
        await d.call("jobs.add", {"job": job})
        preview = await d.call("jobs.trigger", {"name": "edited", "dry_run": True, "payload": 1})
        assert preview["plan"]["targets"] == ["x", "y"] and preview["plan"]["payload"] == 1
        assert preview["attempts"] == 0  # no check: nothing ran at all
        await d.call("jobs.remove", {"name": "edited"})
        await d.call("jobs.add", {"job": {**job, "timeout": "10s"}})
        applied = await d.call("jobs.trigger", {"name": "edited", "apply": preview["id"]})
        assert applied["state"] == "stale"
        assert "job definition changed" in applied["error"]["message"]
        assert applied["attempts"] == 0 and _performed(d) == []


async def test_preview_older_than_its_ttl_is_stale(plans_daemon: DaemonProcess) -> None:
    """A preview applied after the job's preview_ttl ends stale by age, before its check
    runs again (the unchanged-check test applies one younger than its TTL)."""
    d = plans_daemon
    async with asyncio.timeout(30):
        old = await d.call("jobs.trigger", {"name": "quick", "dry_run": True})
        await asyncio.sleep(0.5)  # preview_ttl is 300ms
        applied = await d.call("jobs.trigger", {"name": "quick", "apply": old["id"]})
        assert applied["state"] == "stale"
        assert "older than preview_ttl 300ms" in applied["error"]["message"]
        assert applied["attempts"] == 0 and _performed(d) == []


async def test_apply_once_also_across_a_restart(plans_daemon: DaemonProcess) -> None:
    """Concurrent applies of one preview share one run; after a restart the same preview
    still answers that run with existing: true."""
    d = plans_daemon
    async with asyncio.timeout(40):
        preview = await d.call("jobs.trigger", {"name": "static", "dry_run": True})
        answers = await asyncio.gather(
            *(d.call("jobs.trigger", {"apply": preview["id"]}) for _ in range(4))
        )
        assert len({a["id"] for a in answers}) == 1
        assert sum(not a.get("existing") for a in answers) == 1
        d.wait_run(answers[0]["id"], ENDS)
        assert d.stop() == 0
        d.start()
        again = await d.call("jobs.trigger", {"name": "static", "apply": preview["id"]})
        assert again["id"] == answers[0]["id"] and again["existing"] is True
        assert sorted(_performed(d)) == ["a", "b"]


async def test_apply_cut_short_by_a_crash_decides_again(plans_daemon: DaemonProcess) -> None:
    """1. The daemon is killed (SIGKILL) while an apply's check runs. 2. At the next start the
    apply reads its preview back and decides again: its cut-short check attempt is recorded
    interrupted, the plan still matches. Result: the previewed targets are performed once."""
    d = plans_daemon
    async with asyncio.timeout(60):
        preview = await d.call("jobs.trigger", {"name": "prices", "dry_run": True})
        (d.base / "check_blocks").write_text("1")
        async with asyncio.TaskGroup() as tg:
            request = tg.create_task(_call_or_error(d, "jobs.trigger", {"apply": preview["id"]}))
            await _wait_for_file(d.base / "check_started")
            d.kill9()
        assert isinstance(request.result(), Exception)  # the daemon died before answering
        d.start()
        (applied,) = await d.call("runs.list", {"job": "prices", "trigger": "apply"})
        done = d.wait_run(applied["id"], ENDS)
        assert done["state"] == "succeeded", done
        assert [(a["phase"], a["outcome"]) for a in done["attempts"][:2]] == [
            ("check", "interrupted"),
            ("check", "ok"),
        ]
        assert sorted(_performed(d)) == SOURCE["targets"]


async def test_apply_refuses_what_is_not_a_preview(plans_daemon: DaemonProcess) -> None:
    """Applying a run that is not a previewed preview, or an unknown id, is refused."""
    d = plans_daemon
    async with asyncio.timeout(30):
        plain = await d.call("jobs.trigger", {"name": "static"})
        d.wait_run(plain["id"], ENDS)
        for args, code in (
            ({"apply": plain["id"]}, "conflict"),
            ({"apply": "nope"}, "not_found"),
            ({"apply": plain["id"], "dry_run": True}, "bad_request"),
            ({"apply": plain["id"], "payload": {"x": 1}}, "bad_request"),
        ):
            with pytest.raises(AdminError) as ei:
                await d.call("jobs.trigger", args)
            assert ei.value.code == code, args


async def test_rollback_undoes_succeeded_targets_in_reverse_order(
    plans_daemon: DaemonProcess,
) -> None:
    """1. Five targets, two fail fatally: the run ends partial. 2. runs.rollback calls undo
    for the three that succeeded, last target first. Result: those targets are rolled_back,
    the failed ones stay failed, and the run itself ends rolled_back."""
    d = plans_daemon
    async with asyncio.timeout(40):
        run = await d.call("jobs.trigger", {"name": "fanout"})
        ended = d.wait_run(run["id"], ENDS)
        assert ended["state"] == "partial"
        assert [t["state"] for t in ended["targets"]] == [
            "succeeded",
            "failed",
            "succeeded",
            "failed",
            "succeeded",
        ]
        rolled = await d.call("runs.rollback", {"id": run["id"]})
        assert rolled["id"] == run["id"] and rolled["state"] == "rolled_back", rolled
        assert rolled["targets"]["rolled_back"] == 3 and rolled["targets"]["failed"] == 2
        assert _lines(d, "undone.txt") == ["t5", "t3", "t1"]
        full = await d.call("runs.get", {"id": run["id"]})
        states = {t["target"]: t["state"] for t in full["targets"]}
        assert states == {
            "t1": "rolled_back",
            "t2": "failed",
            "t3": "rolled_back",
            "t4": "failed",
            "t5": "rolled_back",
        }
        undo = [a["target"] for a in full["attempts"] if a["phase"] == "undo"]
        assert undo == ["t5", "t3", "t1"]
        with pytest.raises(AdminError) as ei:
            await d.call("runs.rollback", {"id": run["id"]})
        assert ei.value.code == "conflict"


async def test_on_failure_rollback_happens_by_itself(plans_daemon: DaemonProcess) -> None:
    """With on_failure = "rollback" a partial run is rolled back without being asked."""
    d = plans_daemon
    async with asyncio.timeout(40):
        run = await d.call("jobs.trigger", {"name": "auto"})
        done = d.wait_run(run["id"], ("rolled_back", "failed"))
        assert done["state"] == "rolled_back", done
        assert _lines(d, "undone.txt") == ["t5", "t3", "t1"]
        assert done["error"]["kind"] == "fatal"  # why it was rolled back


async def test_failed_undo_goes_to_dlq_and_retrying_it_undoes_again(
    plans_daemon: DaemonProcess,
) -> None:
    """1. An undo that fails fatally leaves the run failed, naming the target not undone, and
    dead-letters it with phase undo. 2. Retrying that dead letter rolls the run back again
    (it never performs the target). Result: the run ends rolled_back."""
    d = plans_daemon
    (d.base / "undo_t3_fails").write_text("1")
    async with asyncio.timeout(40):
        run = await d.call("jobs.trigger", {"name": "fanout"})
        d.wait_run(run["id"], ENDS)
        first = await d.call("runs.rollback", {"id": run["id"]})
        assert first["state"] == "failed"
        assert "not undone ('t3')" in first["error"]["message"]
        assert first["targets"]["rolled_back"] == 2 and first["targets"]["succeeded"] == 1
        letters = await d.call("dlq.list", {"job": "fanout"})
        assert sorted((e["target"], e["phase"]) for e in letters) == [
            ("t2", "perform"),
            ("t3", "undo"),
            ("t4", "perform"),
        ]
        performed = len(_performed(d))
        res = await d.call(
            "dlq.retry", {"job": "fanout", "kind": "fatal", "since": "1970-01-01T00:00:00Z"}
        )
        assert res["requeued"] == 3  # the undo letter undoes again; t2/t4 are retried
        done = d.wait_run(run["id"], ("rolled_back",))
        assert sum(t["state"] == "rolled_back" for t in done["targets"]) == 3
        assert _lines(d, "undone.txt") == ["t5", "t1", "t3"]
        assert len(_performed(d)) == performed  # t2/t4 fail again: nothing new performed


async def test_rollback_interrupted_by_a_crash_resumes(plans_daemon: DaemonProcess) -> None:
    """1. An automatic rollback is killed (SIGKILL) while t3's undo runs. 2. At the next start
    the run resumes rolling back: t3's cut-short attempt is recorded interrupted and undone
    again, and t5 (undone before the crash) is not undone twice. Result: rolled_back."""
    d = plans_daemon
    (d.base / "undo_t3_blocks").write_text("1")
    async with asyncio.timeout(60):
        run = await d.call("jobs.trigger", {"name": "auto"})
        await _wait_for_file(d.base / "undo_t3_started")
        mid = await d.call("runs.get", {"id": run["id"]})
        assert mid["state"] == "rolling_back"
        d.kill9()
        d.start()
        done = d.wait_run(run["id"], ("rolled_back", "failed"))
        assert done["state"] == "rolled_back", done
        assert _lines(d, "undone.txt") == ["t5", "t3", "t1"]
        t3 = [
            a["outcome"] for a in done["attempts"] if a["phase"] == "undo" and a["target"] == "t3"
        ]
        assert t3 == ["interrupted", "ok"]


async def test_dlq_summary_counts_match_the_entries(plans_daemon: DaemonProcess) -> None:
    """dlq.summary counts entries by job and kind, with the oldest, the newest and a sample
    message; its counts equal what dlq.list holds, and a retry by kind takes exactly those."""
    d = plans_daemon
    async with asyncio.timeout(40):
        runs = [await d.call("jobs.trigger", {"name": n}) for n in ("fanout", "fanout", "flaky")]
        for r in runs:
            d.wait_run(r["id"], ENDS)
        entries = await d.call("dlq.list", {"limit": 1000})
        summary = await d.call("dlq.summary")
        counted: dict[tuple[str, str], int] = {}
        for e in entries:
            key = (e["job"], e["error"]["kind"])
            counted[key] = counted.get(key, 0) + 1
        assert {(g["job"], g["kind"]): g["count"] for g in summary} == counted
        assert counted == {("fanout", "fatal"): 4, ("flaky", "retryable"): 1}
        fan = next(g for g in summary if g["job"] == "fanout")
        assert fan["sample"].endswith("rejected by the partner")
        assert fan["oldest"] <= fan["newest"]
        only = await d.call("dlq.summary", {"kind": "retryable"})
        assert [(g["job"], g["count"]) for g in only] == [("flaky", 1)]
        assert (await d.call("dlq.retry", {"kind": "retryable"}))["requeued"] == 1
        left = {e["id"] for e in await d.call("dlq.list", {"limit": 1000})}
        fanout = {e["id"] for e in entries if e["job"] == "fanout"}
        retried = {e["id"] for e in entries if e["job"] == "flaky"}
        assert fanout <= left and not retried & left  # (its retry may dead-letter anew)
        with pytest.raises(AdminError) as ei:
            await d.call("dlq.retry", {"kind": "bogus"})
        assert ei.value.code == "bad_request"


async def test_new_states_show_in_metrics(plans_daemon: DaemonProcess) -> None:
    """runs_total carries the new states as its state label."""
    d = plans_daemon
    async with asyncio.timeout(30):
        preview = await d.call("jobs.trigger", {"name": "static", "dry_run": True})
        assert preview["state"] == "previewed"
        text = _metrics(d)
        assert 'automationd_runs_total{job="static",state="previewed"} 1.0' in text


def _metrics(d: DaemonProcess) -> str:
    import urllib.request

    addr = next(e["metrics"] for e in d.log_events() if e.get("event") == "daemon.ready")
    deadline = time.monotonic() + 5
    while True:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
        if "previewed" in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)
