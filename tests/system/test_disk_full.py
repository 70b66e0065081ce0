"""A full disk under load: refusals are `unavailable`, the log stays short, nothing acknowledged is
lost or left unfinished, and the daemon recovers when space returns, without a restart.

Needs root to mount a small tmpfs for the state directory; skipped (saying why) otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin_client import AdminClient
from tests.support.daemon import DaemonProcess

ACTS = (
    "import asyncio\n\nasync def work(ctx):\n    await asyncio.sleep(0.2)\n    return {'ok': 1}\n"
)
JOBS = """
[[jobs]]
name = "work"
on = "load.*"
retries = 0
action = { type = "python", callable = "acts:work" }

[[jobs]]
name = "tick"
schedule = "@every 1s"
action = { type = "python", callable = "acts:work" }
"""
PAD = "x" * 60_000  # payloads big enough to outgrow the WAL quickly


@pytest.fixture
def small_disk(short_tmp: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = short_tmp / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    block = b"\0" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        while True:  # the last bytes, a few at a time
            try:
                f.write(b"\0" * 512)
            except OSError:
                break


def _healthz(d: DaemonProcess) -> tuple[int, str]:
    ready = [e for e in d.log_events() if e.get("event") == "daemon.ready"][-1]
    try:
        with urllib.request.urlopen(f"http://{ready['metrics']}/healthz", timeout=5) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()


async def _load(
    d: DaemonProcess,
    until: asyncio.Event,
    acked: list[str],
    codes: Counter[str],
    big: asyncio.Event,
) -> None:
    """Triggers and publishes until ``until`` (with big payloads while ``big`` is set, so the
    disk does not fill again at once after space returns); every answer is tallied."""
    async with AdminClient(d.socket, timeout=10) as c:
        i = 0
        while not until.is_set():
            i += 1
            pad = PAD if big.is_set() else "x"
            batch = [("jobs.trigger", {"name": "work", "payload": {"i": i, "pad": pad}})]
            batch.append(("events.publish", {"name": "load.x", "payload": {"i": i}}))
            for (cmd, _), reply in zip(batch, await c.pipeline(batch), strict=True):
                if reply["ok"]:
                    codes["ok"] += 1
                    result = reply["result"]
                    acked += [result["id"]] if cmd == "jobs.trigger" else result["triggered"]
                else:
                    codes[reply["error"]["code"]] += 1
                    assert reply["error"]["code"] == "unavailable", reply
                    assert reply["error"]["message"] == "store: disk full", reply
            await asyncio.sleep(0.02)


def _noisy(line: str) -> bool:
    """A line about the episode: anything not an ordinary info line (runs finishing are)."""
    try:
        entry: dict[str, Any] = json.loads(line)
    except ValueError:
        return True
    return entry.get("level") != "info" or str(entry.get("event", "")).startswith("store.")


async def test_disk_full_refuses_unavailable_logs_little_and_recovers(
    daemon_factory: Callable[..., DaemonProcess], small_disk: Path
) -> None:
    """1. A daemon whose state_dir is on a 12 MiB tmpfs; a client triggers runs with 60 kB
       payloads and publishes events (each starting a run), and a job fires every second.
    2. A filler file takes all free space; load goes on for 3 s.
    3. The filler is deleted; load goes on until writes succeed again.
    Result: every refusal is `unavailable` "store: disk full"; status and /healthz say why;
    the episode leaves a handful of log lines and no traceback; without a restart, new
    triggers succeed; every acknowledged run is stored and finishes."""
    d = daemon_factory(jobs=JOBS, daemon=f'state_dir = "{small_disk / "state"}"')
    (d.base / "acts.py").write_text(ACTS)
    d.start()
    acked: list[str] = []
    codes: Counter[str] = Counter()
    filler = small_disk / "filler"
    async with asyncio.timeout(90):
        stop, big = asyncio.Event(), asyncio.Event()
        big.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_load(d, stop, acked, codes, big))
            await asyncio.sleep(1.0)
            assert codes["ok"] > 0 and not codes["unavailable"]
            log_mark = d.log_path.stat().st_size
            await asyncio.to_thread(_fill, filler)
            while codes["unavailable"] < 20:  # noqa: ASYNC110 - the WAL outgrows what is left
                await asyncio.sleep(0.05)
            await asyncio.sleep(3.0)
            status = await d.call("status")
            assert status["store"] == {"healthy": False, "reason": "store: disk full"}
            assert await asyncio.to_thread(_healthz, d) == (503, "store: disk full")
            assert len(await d.call("runs.list", {"limit": 5})) == 5  # reads still work

            filler.unlink()
            big.clear()
            refused = codes["unavailable"]
            while True:  # the daemon notices by itself: no restart, no signal
                status = await d.call("status")
                if status["store"]["healthy"]:
                    break
                await asyncio.sleep(0.1)
            ok_after = codes["ok"]
            while codes["ok"] < ok_after + 20:  # noqa: ASYNC110 - counted by the load task
                await asyncio.sleep(0.05)
            stop.set()
        assert await asyncio.to_thread(_healthz, d) == (200, "ok")

        pending = set(acked)
        while pending:  # every acknowledged run is stored and reaches an end
            for run_id in list(pending):
                run = await d.call("runs.get", {"id": run_id})
                if run["state"] in ("succeeded", "failed", "partial", "skipped", "cancelled"):
                    pending.discard(run_id)
            await asyncio.sleep(0.1)

        # The episode ends after 5 s of writes committing (a flapping disk is one episode).
        while '"store.write_recovered"' not in d.logs():  # noqa: ASYNC110 - a log file
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        episode = d.logs().encode()[log_mark:].decode(errors="replace").splitlines()

    assert refused >= 20 and set(codes) <= {"ok", "unavailable"}, codes
    noisy = [line for line in episode if _noisy(line)]
    events = [json.loads(line).get("event") for line in noisy if line.startswith("{")]
    assert len(noisy) <= 6, "\n".join(noisy)
    assert "store.write_failed" in events and "store.write_recovered" in events
    assert not any("Traceback" in line or "exception" in line for line in episode)
    assert d.stop() == 0
    print(f"disk full: {refused} refusals, {len(noisy)} log lines for the episode: {events}")
