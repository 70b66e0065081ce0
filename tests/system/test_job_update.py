"""Changing jobs safely (issue 14, SPEC §7.1): ``jobs.update`` as a merge patch with a
revision, config jobs refused unless overridden (and the override kept across reloads and
restarts), ``jobs.remove`` of a config job, and runs in flight keeping their definition."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from automationd.errors import AdminError
from automationd.units import parse_rfc3339
from tests.support.daemon import BIN, DaemonProcess, config_text

Factory = Callable[..., DaemonProcess]


def cfg_job(retries: int = 1, timeout: str = "90s") -> str:
    return (
        f'[[jobs]]\nname = "cfg"\nschedule = "0 3 * * *"\nretries = {retries}\n'
        f'timeout = "{timeout}"\naction = {{ type = "exec", argv = ["/bin/true"] }}\n'
    )


API: dict[str, Any] = {
    "name": "a",
    "schedule": "0 4 * * *",
    "retries": 2,
    "timeout": "90s",
    "description": "nightly export",
    "action": {"type": "exec", "argv": ["/bin/true"], "env": {"MODE": "full"}},
}


async def refused(d: DaemonProcess, cmd: str, args: dict[str, Any]) -> AdminError:
    with pytest.raises(AdminError) as ei:
        await d.call(cmd, args)
    return ei.value


async def test_merge_patch_keeps_untouched_keys_and_counts_revisions(
    daemon_factory: Factory,
) -> None:
    """1. Add an API job (revision 1, owner = our uid); patch retries and drop description.
    2. A patch that changes nothing, a bad schedule, a missing action, a rename.
    3. Restart.
    Result: only the patched keys changed (the action's env survives); each real change is
    one revision; the refused ones are `bad_request` and change nothing; all of it is kept."""
    d = daemon_factory()
    d.start()
    async with asyncio.timeout(30):
        added = await d.call("jobs.add", {"job": API})
        assert (added["revision"], added["owner"], added["override"]) == (1, 0, False)
        assert added["description"] == "nightly export"
        job = await d.call(
            "jobs.update", {"name": "a", "patch": {"retries": 5, "description": None}}
        )
        assert (job["revision"], job["retries"], job["timeout"]) == (2, 5, "1m30s")
        assert job["description"] is None
        spec = (await d.call("jobs.get", {"name": "a"}))["spec"]
        want = {k: v for k, v in API.items() if k != "description"} | {"retries": 5}
        assert spec == want
        same = await d.call("jobs.update", {"name": "a", "patch": {"retries": 5}})
        assert same["revision"] == 2
        for patch, needle in (
            ({"schedule": "61 * * * *"}, "schedule"),
            ({"action": None}, "action"),
            ({"name": "b"}, "renamed"),
        ):
            err = await refused(d, "jobs.update", {"name": "a", "patch": patch})
            assert err.code == "bad_request" and needle in err.message, err.message
        assert (await d.call("jobs.get", {"name": "a"}))["revision"] == 2
        err = await refused(d, "jobs.update", {"name": "nope", "patch": {"retries": 1}})
        assert err.code == "not_found"
    assert d.stop() == 0
    d.start()
    async with asyncio.timeout(20):
        job = await d.call("jobs.get", {"name": "a"})
    assert (job["revision"], job["retries"], job["owner"]) == (2, 5, 0)
    assert job["spec"]["action"]["env"] == {"MODE": "full"}
    assert d.stop() == 0


async def test_if_revision_is_a_compare_and_set(daemon_factory: Factory) -> None:
    """Two editors read revision 1; the first update wins, the second, still saying
    `if_revision: 1`, is a `conflict` naming the revision now; retrying with it works."""
    d = daemon_factory()
    d.start()
    async with asyncio.timeout(20):
        await d.call("jobs.add", {"job": API})
        first = await d.call(
            "jobs.update", {"name": "a", "patch": {"retries": 3}, "if_revision": 1}
        )
        assert first["revision"] == 2
        err = await refused(
            d, "jobs.update", {"name": "a", "patch": {"retries": 4}, "if_revision": 1}
        )
        assert err.code == "conflict" and "revision 2" in err.message
        assert (await d.call("jobs.get", {"name": "a"}))["retries"] == 3
        again = await d.call(
            "jobs.update", {"name": "a", "patch": {"retries": 4}, "if_revision": 2}
        )
        assert (again["revision"], again["retries"]) == (3, 4)
        err = await refused(
            d, "jobs.update", {"name": "a", "patch": {"retries": 4}, "if_revision": "2"}
        )
        assert err.code == "bad_request"
    assert d.stop() == 0


async def test_a_schedule_change_moves_next_run(daemon_factory: Factory) -> None:
    """A daily 04:00 job changed to `*/5 * * * *` answers with its next run on the new
    schedule: the next five-minute mark, within five minutes from now."""
    d = daemon_factory()
    d.start()
    async with asyncio.timeout(20):
        added = await d.call("jobs.add", {"job": API})
        before = parse_rfc3339(added["next_run"])
        assert before % 86400 == 4 * 3600
        now = time.time()
        job = await d.call("jobs.update", {"name": "a", "patch": {"schedule": "*/5 * * * *"}})
        after = parse_rfc3339(job["next_run"])
        assert after % 300 == 0 and now < after <= now + 300, (now, after)
        shown = await d.call("jobs.get", {"name": "a"})
        assert shown["next_run"] == job["next_run"]
        assert parse_rfc3339(shown["next_fires"][1]["at"]) == after + 300
    assert d.stop() == 0


async def test_config_job_is_refused_then_overridden_and_the_override_survives(
    daemon_factory: Factory,
) -> None:
    """1. Updating config job `cfg` is a `conflict` naming the config file.
    2. With `override: true` it changes (revision 2, `override` shown).
    3. The file changes `cfg` and is reloaded; then the daemon restarts.
    4. `drop_override` puts the file's definition back.
    Result: the override holds through 3 (the reload counts no update), and after 4 the job
    is the file's newest version, override false, revision 3."""
    d = daemon_factory(jobs=cfg_job())
    d.start()
    async with asyncio.timeout(30):
        err = await refused(d, "jobs.update", {"name": "cfg", "patch": {"retries": 4}})
        assert err.code == "conflict"
        assert "managed by" in err.message and str(d.config) in err.message
        job = await d.call(
            "jobs.update", {"name": "cfg", "patch": {"retries": 4}, "override": True}
        )
        assert (job["revision"], job["override"], job["retries"]) == (2, True, 4)
        d.write_config(config_text(d.base, jobs=cfg_job(retries=1, timeout="2m")))
        counts = await d.call("reload")
        assert counts["jobs_updated"] == 0
        job = await d.call("jobs.get", {"name": "cfg"})
        assert (job["override"], job["retries"], job["timeout"]) == (True, 4, "1m30s")
    assert d.stop() == 0
    d.start()
    async with asyncio.timeout(30):
        job = await d.call("jobs.get", {"name": "cfg"})
        assert (job["override"], job["retries"], job["revision"]) == (True, 4, 2)
        back = await d.call("jobs.update", {"name": "cfg", "drop_override": True})
        assert (back["override"], back["retries"], back["timeout"]) == (False, 1, "2m")
        assert back["revision"] == 3
        err = await refused(d, "jobs.update", {"name": "cfg", "drop_override": True})
        assert err.code == "conflict"
        d.write_config(config_text(d.base, jobs=cfg_job(retries=2, timeout="2m")))
        assert (await d.call("reload"))["jobs_updated"] == 1
        job = await d.call("jobs.get", {"name": "cfg"})
        assert (job["retries"], job["revision"]) == (2, 4)
    assert d.stop() == 0


async def test_removing_a_config_job_needs_an_override_that_lasts(daemon_factory: Factory) -> None:
    """`jobs.remove` of a config job is a `conflict` ("managed by FILE"); with `override`
    it goes, and stays gone across a reload and a restart, until `drop_override` brings
    the file's job back with its run count."""
    d = daemon_factory(jobs=cfg_job())
    d.start()
    async with asyncio.timeout(30):
        run = await d.call("jobs.trigger", {"name": "cfg"})
        d.wait_run(run["id"])
        err = await refused(d, "jobs.remove", {"name": "cfg"})
        assert err.code == "conflict" and "managed by" in err.message
        await d.call("jobs.remove", {"name": "cfg", "override": True})
        await d.call("reload")
        assert [j["name"] for j in await d.call("jobs.list")] == []
        err = await refused(d, "jobs.add", {"job": {**API, "name": "cfg"}})
        assert err.code == "conflict"
    assert d.stop() == 0
    d.start()
    async with asyncio.timeout(30):
        assert [j["name"] for j in await d.call("jobs.list")] == []
        job = await d.call("jobs.update", {"name": "cfg", "drop_override": True})
        assert (job["source"], job["override"], job["run_count"]) == ("config", False, 1)
        assert job["next_run"] is not None
    assert d.stop() == 0


SLOW_FAIL = (
    '[[jobs]]\nname = "w"\non = "never"\nretries = 2\n'
    'backoff = { base = "100ms", max = "100ms", jitter = 0.0 }\n'
    'action = { type = "exec", argv = ["/bin/sh", "-c", "echo v1; sleep 1; exit 75"] }\n'
)


async def test_runs_in_flight_keep_the_definition_they_started_with(
    daemon_factory: Factory,
) -> None:
    """1. Job `w` (overridden config job) fails retryably on its first attempt, slowly.
    2. While that attempt runs, its action is changed to one that succeeds.
    Result: the run's retry still uses the old action (both attempts print v1 and the run
    fails); a new run uses the new action and succeeds."""
    d = daemon_factory(jobs=SLOW_FAIL)
    d.start()
    async with asyncio.timeout(40):
        run = await d.call("jobs.trigger", {"name": "w"})
        d.wait_run(run["id"], states=("running",))
        patch = {"action": {"argv": ["/bin/sh", "-c", "echo v2"]}}
        await d.call("jobs.update", {"name": "w", "patch": patch, "override": True})
        old = await asyncio.to_thread(d.wait_run, run["id"])
        assert old["state"] == "failed" and len(old["attempts"]) >= 2
        texts = [c["text"].strip() for c in await d.call("runs.logs", {"id": run["id"]})]
        assert texts == ["v1"] * len(old["attempts"])
        new = await d.call("jobs.trigger", {"name": "w"})
        assert (await asyncio.to_thread(d.wait_run, new["id"]))["state"] == "succeeded"
        texts = [c["text"].strip() for c in await d.call("runs.logs", {"id": new["id"]})]
        assert texts == ["v2"]
    assert d.stop() == 0


async def test_automationctl_jobs_edit(daemon_factory: Factory) -> None:
    """`automationctl jobs edit a --set retries=3 --set 'schedule=…'` changes those keys
    and says the new revision; a stale `--if-revision` exits 1 with `conflict`."""
    d = daemon_factory()
    d.start()
    async with asyncio.timeout(20):
        await d.call("jobs.add", {"job": API})

    def ctl(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "automationctl"), "--socket", str(d.socket), *argv],
            capture_output=True,
            text=True,
            timeout=20,
        )

    done = await asyncio.to_thread(
        ctl, "jobs", "edit", "a", "--set", "retries=3", "--set", "schedule=*/10 * * * *"
    )
    assert done.returncode == 0, done.stderr
    assert "updated job a: revision 2" in done.stdout and "next run" in done.stdout
    stale = await asyncio.to_thread(
        ctl, "jobs", "edit", "a", "--set", "retries=1", "--if-revision", "1"
    )
    assert stale.returncode == 1 and "conflict" in stale.stderr
    async with asyncio.timeout(10):
        job = await d.call("jobs.get", {"name": "a"})
    assert (job["retries"], job["schedule"], job["revision"]) == (3, "*/10 * * * *", 2)
    assert d.stop() == 0
