"""API jobs in the store across restarts, as loaded fast at start-up (issue 4): each keeps the
spec it was added with, is validated again under the config of the day, and a broken row costs
only itself; a config job's ``jobs.get`` spec is rebuilt from the loaded job."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from automationd.errors import AdminError
from tests.support.daemon import DaemonProcess, config_text

Factory = Callable[..., DaemonProcess]
SERVICE = '[services.api]\nrate = "10/s"\n'
CONFIG_JOB = (
    '[[jobs]]\nname = "cfg"\nschedule = "0 3 * * *"\ntimeout = "90s"\n'
    'action = { type = "exec", argv = ["/bin/true", "x"] }\n'
)


def api_spec(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": "0 4 * * *",
        "action": {"type": "exec", "argv": ["/bin/true"]},
        **extra,
    }


async def test_stored_api_jobs_reload_validated_and_broken_rows_skipped(
    daemon_factory: Factory,
) -> None:
    """1. Add API jobs `plain` and `svc` (on service `api`); stop.
    2. Break the store: a row whose spec is not JSON, one whose spec names another job.
    3. Restart with a config that no longer has service `api`.
    Result: `plain` is back with the spec it was added with; `svc` and both broken rows are
    left out, each logged as job.load_failed naming the job and why."""
    d = daemon_factory(services=SERVICE, jobs=CONFIG_JOB)
    d.start()
    async with asyncio.timeout(20):
        await d.call("jobs.add", {"job": api_spec("plain", retries=1)})
        await d.call("jobs.add", {"job": api_spec("svc", service="api")})
    assert d.stop() == 0
    with sqlite3.connect(d.base / "state" / "automationd.db") as db:
        db.executemany(
            "INSERT INTO jobs (name, source, spec) VALUES (?, 'api', ?)",
            [("notjson", "{oops"), ("liar", json.dumps(api_spec("someone-else")))],
        )
    d.write_config(config_text(d.base, jobs=CONFIG_JOB))
    d.start()
    async with asyncio.timeout(20):
        got = await d.call("jobs.get", {"name": "plain"})
        assert got["source"] == "api" and got["retries"] == 1
        assert got["spec"] == api_spec("plain", retries=1)
        for name in ("svc", "notjson", "liar"):
            with pytest.raises(AdminError) as ei:
                await d.call("jobs.get", {"name": name})
            assert ei.value.code == "not_found"
    failed = {e["job"]: e["error"] for e in d.log_events() if e.get("event") == "job.load_failed"}
    assert "unknown service 'api'" in failed["svc"]
    assert "not a JSON object" in failed["notjson"]
    assert "someone-else" in failed["liar"]
    assert d.stop() == 0


async def test_config_job_spec_is_rebuilt_for_jobs_get(daemon_factory: Factory) -> None:
    """`jobs.get` on a config job shows its table with every setting in effect, inherited
    ones included, though the daemon keeps no copy of the TOML."""
    d = daemon_factory(jobs=CONFIG_JOB, extra="[defaults]\nretries = 6\n")
    d.start()
    async with asyncio.timeout(20):
        spec = (await d.call("jobs.get", {"name": "cfg"}))["spec"]
    assert spec["name"] == "cfg" and spec["schedule"] == "0 3 * * *"
    assert spec["action"] == {"type": "exec", "argv": ["/bin/true", "x"]}
    assert (spec["timeout"], spec["retries"], spec["overlap"]) == ("1m30s", 6, "skip")
    assert d.stop() == 0
