"""The real daemon's life under systemd: sd_notify, watchdog, signals, reload, one per state dir.

SPEC §1: READY=1 once socket, metrics and scheduler are up; WATCHDOG=1 at half WATCHDOG_USEC;
RELOADING=1/READY=1 around a reload; STOPPING=1 on shutdown; path and abstract sockets. The
systemd variables never reach a job's process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import BIN, DaemonProcess, config_text
from tests.support.notify import NotifyMessage, NotifyReceiver

PRIVATE = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY")
DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


def exec_job(name: str, argv: list[str]) -> str:
    """A ``[[jobs]]`` table: an exec action started only by trigger (or a `x.*` event)."""
    action = f'{{ type = "exec", argv = {json.dumps(argv)} }}'
    return f'[[jobs]]\nname = "{name}"\non = "x.*"\naction = {action}\n'


async def wait_log(d: DaemonProcess, event: str) -> dict[str, Any]:
    """The first log line with ``event``, polled from the daemon's JSON log (5 s deadline)."""
    async with asyncio.timeout(5):
        while True:
            found = next((e for e in d.log_events() if e.get("event") == event), None)
            if found is not None:
                return found
            await asyncio.sleep(0.02)


def watchdog_pings(rx: NotifyReceiver) -> list[NotifyMessage]:
    return [m for m in rx.messages if m.matches("WATCHDOG=1")]


@pytest.mark.parametrize("kind", ["path", "abstract"])
async def test_notify_ready_watchdog_stopping_and_private_env(
    daemon_factory: Callable[..., DaemonProcess], short_tmp: Path, kind: str
) -> None:
    """1. Start with NOTIFY_SOCKET (path or @abstract), WATCHDOG_USEC=1 s, no WATCHDOG_PID,
       and CREDENTIALS_DIRECTORY set.
    2. READY=1 arrives with a STATUS=; watchdog pings keep coming at most 0.5 s apart.
    3. An exec job dumps its environment.
    4. SIGTERM.
    Result: the child saw none of the systemd variables; STOPPING=1 arrives; exit 0 within 1 s.
    """
    out = short_tmp / "child-env.json"
    d = daemon_factory(jobs=exec_job("dump-env", [sys.executable, "-c", DUMP_ENV, str(out)]))
    path = str(short_tmp / "notify.sock")
    address = path if kind == "path" else NotifyReceiver.abstract().address
    async with NotifyReceiver(address) as rx:
        d.start(
            env={"NOTIFY_SOCKET": rx.address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "",
                 "CREDENTIALS_DIRECTORY": str(short_tmp)},
            wait=False,
        )  # fmt: skip
        ready = await rx.wait_for_message("READY=1", timeout=10)
        assert ready.fields.get("STATUS", "").startswith("running: 1 jobs")

        await asyncio.sleep(1.6)  # three watchdog intervals
        pings = watchdog_pings(rx)
        assert len(pings) >= 3, [m.text for m in rx.messages]
        after_ready = [p.arrived for p in pings if p.arrived >= ready.arrived]
        gaps = [b - a for a, b in zip([ready.arrived, *after_ready], after_ready, strict=False)]
        assert max(gaps) < 0.5 * 1.3, f"watchdog gaps {gaps}"  # 30 % scheduling slack

        run = await d.call("jobs.trigger", {"name": "dump-env"})
        done = await asyncio.to_thread(d.wait_run, run["id"])
        assert done["state"] == "succeeded", done
        child_env = json.loads(out.read_text())
        assert child_env["AUTOMATIOND_JOB"] == "dump-env"
        assert not set(PRIVATE) & set(child_env)

        t0 = time.monotonic()
        d.send(signal.SIGTERM)
        await rx.wait_for_message("STOPPING=1", timeout=5)
        assert d.proc is not None
        assert await asyncio.to_thread(d.proc.wait, 5) == 0
        assert time.monotonic() - t0 < 1.0
        order = [k for m in rx.messages for k in ("READY=1", "STOPPING=1") if m.matches(k)]
        assert order == ["READY=1", "STOPPING=1"]


async def test_sighup_rejects_broken_config_then_applies_good_one(
    daemon_factory: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    """1. Running with job `a`; the file is broken (bad duration) and SIGHUP is sent.
    2. The log says config.reload_rejected; RELOADING=1 then READY=1; still only `a`.
    3. The file now adds job `b`; SIGHUP again.
    Result: config.reloaded, `b` is listed, RELOADING=1 then READY=1 again; daemon alive.
    """
    job_a, job_b = exec_job("a", ["true"]), exec_job("b", ["true"])
    d = daemon_factory(jobs=job_a)
    async with NotifyReceiver(str(short_tmp / "notify.sock")) as rx:
        d.start(env={"NOTIFY_SOCKET": rx.address}, wait=False)
        await rx.wait_for_message("READY=1", timeout=10)

        d.write_config(config_text(d.base, jobs=job_a, extra='[defaults]\ntimeout = "2x"\n'))
        mark = len(rx.messages)
        d.send(signal.SIGHUP)
        rejected = await wait_log(d, "config.reload_rejected")
        assert "defaults.timeout" in rejected["error"]
        reloading = await rx.wait_for_message("RELOADING=1", start=mark)
        assert "MONOTONIC_USEC" in reloading.fields
        await rx.wait_for_message("READY=1", start=rx.messages.index(reloading) + 1)
        assert [j["name"] for j in await d.call("jobs.list")] == ["a"]

        d.write_config(config_text(d.base, jobs=job_a + job_b))
        mark = len(rx.messages)
        d.send(signal.SIGHUP)
        reloaded = await wait_log(d, "config.reloaded")
        assert reloaded["jobs_added"] == 1
        reloading = await rx.wait_for_message("RELOADING=1", start=mark)
        await rx.wait_for_message("READY=1", start=rx.messages.index(reloading) + 1)
        assert sorted(j["name"] for j in await d.call("jobs.list")) == ["a", "b"]
    assert d.stop() == 0


async def test_socket_reload_answers_bad_request_for_broken_config(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """`automationctl reload` on a broken file exits 1 with bad_request naming the key; the old
    config stays; on a fixed file it exits 0 and reports the change."""
    job = exec_job("a", ["true"])
    d = daemon_factory(jobs=job)
    d.start()
    d.write_config(config_text(d.base, jobs=job.replace('"exec"', '"nope"')))
    ctl = [str(BIN / "automationctl"), "--socket", str(d.socket), "reload"]
    proc = await asyncio.to_thread(subprocess.run, ctl, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: bad_request: ") and "jobs[0].action" in proc.stderr
    assert [j["name"] for j in await d.call("jobs.list")] == ["a"]
    d.write_config(config_text(d.base, jobs=job + exec_job("b", ["true"])))
    proc = await asyncio.to_thread(subprocess.run, ctl, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert "1 added" in proc.stdout
    assert d.stop() == 0


async def test_second_daemon_on_same_state_dir_exits_1_with_one_line(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Starting the same config twice: the second exits 1 with one `automationd: …locked…`
    line and no traceback, and the first keeps its socket and keeps serving."""
    d = daemon_factory()
    d.start()
    first_pid = (await d.call("status"))["pid"]
    proc = await asyncio.to_thread(
        subprocess.run, [str(BIN / "automationd"), "run", "--config", str(d.config)],
        capture_output=True, text=True, timeout=15,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    human = [line for line in proc.stderr.splitlines() if line.startswith("automationd: ")]
    assert len(human) == 1, proc.stderr
    assert "locked by another automationd" in human[0] and f"pid {first_pid}" in human[0]
    assert (await d.call("status"))["pid"] == first_pid
    assert d.stop() == 0


async def test_second_sigint_forces_stop_past_a_long_attempt(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A 30 s exec attempt is running; shutdown_timeout is 20 s.
    2. SIGINT starts the drain; a second SIGINT forces.
    Result: exit 0 well before the timeout, the run is cancelled for resumption (logged count).
    """
    d = daemon_factory(jobs=exec_job("slow", ["sleep", "30"]), daemon='shutdown_timeout = "20s"')
    d.start()
    run = await d.call("jobs.trigger", {"name": "slow"})
    await asyncio.to_thread(d.wait_run, run["id"], ("running",))
    t0 = time.monotonic()
    d.send(signal.SIGINT)
    await wait_log(d, "daemon.draining")
    d.send(signal.SIGINT)
    assert d.proc is not None
    assert await asyncio.to_thread(d.proc.wait, 10) == 0
    assert time.monotonic() - t0 < 3.0
    assert (await wait_log(d, "daemon.cancelled_runs"))["runs"] == 1
