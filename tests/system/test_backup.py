"""``store.backup`` / ``automationctl backup FILE`` (issue 14): an online copy of the store,
taken while the daemon serves a steady trigger load, that opens, passes SQLite's
``integrity_check``, holds every run acknowledged before it began, and restores: a daemon
started on it has the jobs and runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from automationd.errors import AdminError
from tests.support.admin_client import AdminClient
from tests.support.daemon import BIN, DaemonProcess, config_text

Factory = Callable[..., DaemonProcess]
JOB = '[[jobs]]\nname = "fast"\non = "f"\naction = { type = "python", callable = "acts:ok" }\n'
ACTS = "async def ok(ctx):\n    return {}\n"
RATE, TICK = 500, 0.05  # triggers per second, sent in pipelined groups every TICK


SEEDED = 120_000  # finished runs already stored: a copy that takes a while


def _seed(db_path: Path, n: int) -> None:
    """``n`` finished runs of an hour ago (ids sort by creation time: retention keeps them)."""
    ms = int((time.time() - 3600) * 1000)
    payload = '{"k":"' + "x" * 200 + '"}'
    with sqlite3.connect(db_path) as db:
        db.executemany(
            "INSERT INTO runs (id, job, state, trigger, created_at, payload, result)"
            " VALUES (?, 'fast', 'succeeded', 'manual', ?, ?, '{}')",
            ((f"{ms:012x}{i:020x}", ms / 1000, payload) for i in range(n)),
        )


def _integrity(path: Path) -> tuple[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    return ok, runs


async def _load(d: DaemonProcess, stop: asyncio.Event, acked: list[float]) -> None:
    """Trigger `fast` at RATE per second until ``stop``; note when each was acknowledged."""
    per_tick = int(RATE * TICK)
    async with AdminClient(d.socket, timeout=30) as c:
        nxt = time.monotonic()
        while not stop.is_set():
            replies = await c.pipeline([("jobs.trigger", {"name": "fast"})] * per_tick)
            assert all(r["ok"] for r in replies), replies[0]
            now = time.monotonic()
            acked.extend([now] * per_tick)
            nxt += TICK
            await asyncio.sleep(max(0.0, nxt - now))


async def test_backup_under_load_passes_integrity_check_and_restores(
    daemon_factory: Factory, short_tmp: Path
) -> None:
    """1. Seed 120,000 finished runs. Drive 500 triggers/s at the daemon; after 1 s take a
       backup, keep the load up 1 s more.
    2. Check the copy; start a second daemon whose state is the copy.
    Result: the copy is 0600, its size is what was answered, integrity_check says ok, it
    holds at least every run acknowledged before the backup began; the load went on during
    the backup; the restored daemon answers with the job's runs."""
    d = daemon_factory(jobs=JOB)
    (d.base / "acts.py").write_text(ACTS)
    d.start()
    assert d.stop() == 0
    await asyncio.to_thread(_seed, d.base / "state" / "automationd.db", SEEDED)
    d.start()
    target = short_tmp / "backup.db"
    stop, acked = asyncio.Event(), []
    async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
        tg.create_task(_load(d, stop, acked))
        await asyncio.sleep(1.0)
        began, before = time.monotonic(), len(acked)
        got = await d.call("store.backup", {"path": str(target)})
        ended, during = time.monotonic(), len(acked) - before
        await asyncio.sleep(1.0)
        stop.set()
    rate = len(acked) / (acked[-1] - acked[0])
    print(f"load {rate:.0f} runs/s; backup {got['bytes']} bytes in {ended - began:.3f} s")
    assert got == {"path": str(target), "bytes": target.stat().st_size, **_dur(got)}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    ok, runs = await asyncio.to_thread(_integrity, target)
    assert ok == "ok"
    assert runs >= before
    assert during > 0  # triggers were answered while it copied
    assert rate > 100  # a real load (the target is 500/s; a busy CI host gets less)
    left = await asyncio.to_thread(os.listdir, short_tmp)
    assert not [n for n in left if n.startswith(".backup.db")]  # no temporary file left
    assert d.stop() == 0

    restored = short_tmp / "restored"
    (restored / "state").mkdir(parents=True)
    shutil.copy(target, restored / "state" / "automationd.db")
    (restored / "acts.py").write_text(ACTS)
    r = DaemonProcess(restored, config_text(restored, jobs=JOB))
    try:
        r.start()
        async with asyncio.timeout(20):
            listed = await r.call("runs.list", {"job": "fast", "limit": 1000})
        assert len(listed) == min(1000, runs)
        assert r.stop() == 0
    finally:
        r.close()


def _dur(got: dict[str, object]) -> dict[str, object]:
    return {"duration_s": got["duration_s"]}


async def test_backup_never_overwrites_and_wants_an_absolute_path(
    daemon_factory: Factory, short_tmp: Path
) -> None:
    """An existing file is a `conflict` (and left alone), a relative path or a missing
    folder `bad_request`; `automationctl backup FILE` makes a relative FILE absolute."""
    d = daemon_factory(jobs=JOB)
    (d.base / "acts.py").write_text(ACTS)
    d.start()
    existing = short_tmp / "keep.db"
    existing.write_text("precious")
    async with asyncio.timeout(20):
        for path, code in (
            (str(existing), "conflict"),
            ("rel.db", "bad_request"),
            (str(short_tmp / "no" / "x.db"), "bad_request"),
        ):
            with pytest.raises(AdminError) as ei:
                await d.call("store.backup", {"path": path})
            assert ei.value.code == code, ei.value
    assert existing.read_text() == "precious"
    done = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "automationctl"), "--socket", str(d.socket), "backup", "copy.db"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=short_tmp,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backup written to {short_tmp / 'copy.db'} (")
    assert (await asyncio.to_thread(_integrity, short_tmp / "copy.db"))[0] == "ok"
    assert d.stop() == 0
