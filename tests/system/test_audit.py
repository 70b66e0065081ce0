"""The audit trail (issue 14): every state-changing command, by whoever and however sent
(socket, SIGHUP), is stored with when, who, what, a redacted copy of its arguments and the
outcome; ``audit.list`` reads it newest first, and it survives a restart."""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

from automationd.errors import AdminError
from automationd.units import rfc3339
from tests.support.daemon import BIN, DaemonProcess

Factory = Callable[..., DaemonProcess]
CFG = '[[jobs]]\nname = "cfg"\non = "x"\naction = { type = "exec", argv = ["true"] }\n'
JOB: dict[str, Any] = {
    "name": "a",
    "on": "a.go",
    "action": {"type": "exec", "argv": ["/bin/true"], "env": {"API_TOKEN": "s3cret"}},
}


async def wait_for(d: DaemonProcess, pred: Callable[[list[Any]], bool]) -> list[Any]:
    """audit.list until ``pred`` holds (a signal's reload lands asynchronously)."""
    while True:
        trail: list[Any] = await d.call("audit.list", {"limit": 100})
        if pred(trail):
            return trail
        await asyncio.sleep(0.05)


async def test_each_change_is_on_the_trail_with_its_caller_and_survives_restart(
    daemon_factory: Factory,
) -> None:
    """1. Over the socket: add, update, a refused update, pause, trigger, reload; read-only
       commands too. Then SIGHUP.
    2. Restart the daemon.
    Result: one entry per state-changing command, newest first, with our uid and name (the
    SIGHUP one via "signal"), outcome ok or the error code, the secret env value hidden;
    reads are not recorded; the same entries are there after the restart."""
    d = daemon_factory(jobs=CFG)
    d.start()
    me, name = os.getuid(), getpass.getuser()
    async with asyncio.timeout(30):
        t0 = time.time()
        await d.call("jobs.add", {"job": JOB})
        await d.call("jobs.update", {"name": "a", "patch": {"retries": 1}})
        try:
            await d.call("jobs.update", {"name": "cfg", "patch": {"retries": 1}})
        except AdminError as exc:
            assert exc.code == "conflict"
        await d.call("jobs.pause", {"name": "a"})
        run = await d.call("jobs.trigger", {"name": "a"})
        await d.call("reload")
        await d.call("jobs.list")
        await d.call("jobs.get", {"name": "a"})
        d.send(signal.SIGHUP)
        trail = await wait_for(d, lambda t: any(e["via"] == "signal" for e in t))
    got = [(e["cmd"], e["target"], e["outcome"]) for e in trail]
    assert got == [
        ("reload", None, "ok"),
        ("reload", None, "ok"),
        ("jobs.trigger", "a", "ok"),
        ("jobs.pause", "a", "ok"),
        ("jobs.update", "cfg", "conflict"),
        ("jobs.update", "a", "ok"),
        ("jobs.add", "a", "ok"),
    ]
    hup, *socket_entries = trail
    assert (hup["via"], hup["uid"], hup["user"]) == ("signal", None, "SIGHUP")
    for e in socket_entries:
        assert (e["via"], e["uid"], e["user"]) == ("socket", me, name)
    added = trail[-1]
    assert added["args"]["job"]["action"]["env"] == {"API_TOKEN": "***"}
    assert "s3cret" not in str(trail) and len(added["digest"]) == 16
    assert "managed by" in trail[-3]["error"]
    ats = [e["at"] for e in trail]
    assert ats == sorted(ats, reverse=True)
    assert run["id"]
    assert d.stop() == 0

    d.start()
    async with asyncio.timeout(20):
        again = await d.call("audit.list", {"limit": 100})
        assert again == trail
        only_a = await d.call("audit.list", {"job": "a"})
        cmds = [e["cmd"] for e in only_a]
        assert cmds == ["jobs.trigger", "jobs.pause", "jobs.update", "jobs.add"]
        assert len(await d.call("audit.list", {"limit": 2})) == 2
        later = await d.call("audit.list", {"since": rfc3339(time.time() + 1)})
        assert later == []
        assert len(await d.call("audit.list", {"since": rfc3339(t0 - 1)})) == len(trail)


async def test_automationctl_audit_prints_the_trail(daemon_factory: Factory) -> None:
    """`automationctl audit --job a` prints a table of a's entries with who and outcome."""
    d = daemon_factory(jobs=CFG)
    d.start()
    async with asyncio.timeout(20):
        await d.call("jobs.add", {"job": JOB})
        await d.call("jobs.update", {"name": "a", "patch": {"retries": 2}})
    done = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "automationctl"), "--socket", str(d.socket), "audit", "--job", "a"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["AT", "UID", "USER", "CMD", "TARGET", "OUTCOME"]
    assert "jobs.update" in lines[1] and "jobs.add" in lines[2] and " ok" in lines[1]
    assert d.stop() == 0
