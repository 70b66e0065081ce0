"""A damaged store: reads report the bad row, `store.check` finds it, a damaged file is refused
at start with the way back, and `automationd check-store` works offline (SPEC §7.1)."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.daemon import BIN, DaemonProcess

JOB = '[[jobs]]\nname = "a"\non = "x.*"\naction = { type = "exec", argv = ["true"] }\n'


def _db(d: DaemonProcess) -> Path:
    return d.base / "state" / "automationd.db"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_bad_rows_are_reported_not_fatal_and_store_check_names_them(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. Three runs and two events; then, behind the daemon's back, one run's payload becomes
       bytes that are not UTF-8, another run's state a word no version wrote, and an event's
       name invalid UTF-8.
    Result: runs.list, runs.get and events.list answer ok, the bad rows marked `store: damaged
    row (…)`; store.check says ok=false naming each row; `automationctl check-store` exits 1;
    `automationd check-store` (offline, after stop) lists the same; the next start is refused
    in one line naming the ways back."""
    d = daemon_factory(jobs=JOB)
    d.start()
    assert d.call_sync("store.check") == {"ok": True, "problems": []}
    ids = [
        d.wait_run(d.call_sync("jobs.trigger", {"name": "a", "payload": {"n": i}})["id"])["id"]
        for i in range(3)
    ]
    events = [d.call_sync("events.publish", {"name": f"y.{i}"})["id"] for i in range(2)]
    with sqlite3.connect(_db(d)) as db:
        bad = "CAST(X'7B226E223AFF7D' AS TEXT)"  # {"n":<0xFF>}
        db.execute(f"UPDATE runs SET payload = {bad} WHERE id=?", (ids[0],))
        db.execute("UPDATE runs SET state = 'exploded' WHERE id=?", (ids[1],))
        db.execute("UPDATE events SET name = CAST(X'792EFE' AS TEXT) WHERE id=?", (events[0],))

    runs = {r["id"]: r for r in d.call_sync("runs.list", {"job": "a"})}
    assert set(runs) == set(ids)
    assert runs[ids[0]]["reason"] == "store: damaged row (not valid UTF-8 in payload)"
    assert runs[ids[0]]["payload"] == {"undecodable": '{"n":\ufffd}'}
    assert runs[ids[1]]["reason"].startswith("store: damaged row (ValueError: 'exploded'")
    assert runs[ids[2]]["reason"] is None and runs[ids[2]]["payload"] == {"n": 2}
    assert d.call_sync("runs.get", {"id": ids[0]})["state"] == "succeeded"
    assert len(d.call_sync("runs.list")) == 3
    listed = {e["id"]: e for e in d.call_sync("events.list")}
    assert listed[events[0]]["name"] == "y.\ufffd"
    assert listed[events[0]]["payload"]["damaged"].startswith("store: damaged row")
    assert listed[events[1]]["name"] == "y.1"

    check = d.call_sync("store.check")
    assert check["ok"] is False
    assert check["problems"] == [
        f"runs row id='{ids[0]}': column payload is not valid UTF-8 (byte 5)",
        f"runs row id='{ids[1]}': column state is unknown value 'exploded'",
        f"events row id='{events[0]}': column name is not valid UTF-8 (byte 2)",
    ]
    ctl = _run(str(BIN / "automationctl"), "--socket", str(d.socket), "check-store")
    assert ctl.returncode == 1 and "store DAMAGED" in ctl.stdout
    assert "column payload is not valid UTF-8" in ctl.stdout
    assert d.stop() == 0

    offline = _run(str(BIN / "automationd"), "check-store", "--config", str(d.config))
    assert offline.returncode == 1
    assert offline.stdout.splitlines() == check["problems"]
    assert "DAMAGED (3 problem(s) above)" in offline.stderr

    refused = _run(str(BIN / "automationd"), "run", "--config", str(d.config))
    assert refused.returncode == 1
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"automationd: store damaged: {_db(d)}: runs row id=")
    assert "restore a backup" in line and "VACUUM INTO" in line and "check-store" in line


def test_scribbled_page_content_is_refused_at_start(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A run whose payload holds a marker; stop the daemon; overwrite the marker's bytes in
       the database file with bytes that are not UTF-8 (SQLite's quick_check does not look
       inside values, so it passes).
    Result: the start is refused (exit 1) in one stderr line naming the row and the ways back,
    and `automationd check-store` exits 1 naming the same row."""
    d = daemon_factory(jobs=JOB)
    d.start()
    run = d.call_sync("jobs.trigger", {"name": "a", "payload": {"m": "SCRIBBLE-HERE"}})
    d.wait_run(run["id"])
    assert d.stop() == 0
    raw = _db(d).read_bytes()
    # the run's row, and the audit trail's copy of the trigger's arguments (its rows come
    # later in the check): the WAL was checkpointed at the clean stop
    assert raw.count(b"SCRIBBLE-HERE") >= 1
    _db(d).write_bytes(raw.replace(b"SCRIBBLE-HERE", b"\xff\xfe" * 6 + b"\xff"))
    with sqlite3.connect(_db(d)) as db:
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]

    refused = _run(str(BIN / "automationd"), "run", "--config", str(d.config))
    assert refused.returncode == 1
    line = refused.stderr.strip().splitlines()[-1]
    assert f"runs row id='{run['id']}': column payload is not valid UTF-8" in line
    assert "restore a backup" in line and "VACUUM INTO" in line

    offline = _run(str(BIN / "automationd"), "check-store", "--config", str(d.config))
    assert offline.returncode == 1 and run["id"] in offline.stdout


def test_broken_page_structure_is_refused_at_start(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A store with a few hundred events; stop; scribble over the header of a page in the
       middle of the file.
    Result: the start is refused in one line that quotes SQLite's check and names the way
    back; the file is left as it was (nothing writes to a damaged store)."""
    d = daemon_factory(jobs=JOB)
    d.start()
    for i in range(300):
        d.call_sync("events.publish", {"name": f"z.{i}", "payload": {"pad": "x" * 200}})
    assert d.stop() == 0
    path = _db(d)
    raw = bytearray(path.read_bytes())
    page = 4096
    assert len(raw) > 8 * page
    mid = (len(raw) // page // 2) * page
    raw[mid : mid + 64] = b"\xa5" * 64
    path.write_bytes(bytes(raw))

    refused = _run(str(BIN / "automationd"), "run", "--config", str(d.config))
    assert refused.returncode == 1
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"automationd: store damaged: {path}: ")
    assert "quick_check" in line or "malformed" in line
    assert "restore a backup" in line and "VACUUM INTO" in line
    assert path.read_bytes() == bytes(raw)
