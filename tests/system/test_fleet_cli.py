"""``automationd migrate`` and ``run`` against PostgreSQL (SPEC §7.4): exit codes and lines."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.daemon import BIN, DaemonProcess
from tests.support.fleet import store_section


def _automationd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "automationd"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_migrate_creates_the_schema_then_finds_it_up_to_date(
    daemon_factory: Callable[..., DaemonProcess], pg_dsn_empty: str
) -> None:
    """1. migrate an empty database; 2. migrate again. Result: exit 0 both times, one line
    saying what was done."""
    d = daemon_factory(extra=store_section(pg_dsn_empty, ttl="3s", node_id="a"))
    first = _automationd("migrate", "--config", str(d.config))
    assert first.returncode == 0, first.stderr
    assert "migrated from version 0 to" in first.stdout
    again = _automationd("migrate", "--config", str(d.config))
    assert again.returncode == 0 and "up to date" in again.stdout


def test_run_on_an_unmigrated_database_exits_1_saying_to_migrate(
    daemon_factory: Callable[..., DaemonProcess], pg_dsn_empty: str
) -> None:
    """``run`` never migrates: exit 1, and stderr names the command to run."""
    d = daemon_factory(extra=store_section(pg_dsn_empty, ttl="3s", node_id="a"))
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == 1
    assert "automationd migrate --config FILE" in d.logs()


def test_migrate_of_an_unreachable_database_exits_1_with_one_line(
    daemon_factory: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    """A DSN nobody answers: exit 1 and exactly one stderr line."""
    dsn = f"postgresql://postgres@/none?host={short_tmp}/nowhere"
    d = daemon_factory(extra=store_section(dsn, ttl="3s", node_id="a"))
    proc = _automationd("migrate", "--config", str(d.config))
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("automationd migrate: cannot connect to PostgreSQL")


def test_migrate_with_the_sqlite_backend_has_nothing_to_do(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """SQLite migrates itself at start; ``migrate`` says so and exits 0."""
    d = daemon_factory()
    proc = _automationd("migrate", "--config", str(d.config))
    assert proc.returncode == 0 and "migrates itself" in proc.stdout


def test_a_sqlite_daemon_is_a_fleet_of_one(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """On SQLite ``workers.list`` shows the one daemon, always the leader, and ``status``
    says node {id, leader: true} and fleet {nodes: 1}; ``automationctl workers`` prints it."""
    d = daemon_factory(extra='[store]\nnode_id = "solo"\n')
    d.start()
    (w,) = d.call_sync("workers.list")
    assert (w["id"], w["leader"], w["capacity"], w["busy"]) == ("solo", True, 16, 0)
    assert set(w) == {
        "id",
        "host",
        "pid",
        "version",
        "started_at",
        "heartbeat_at",
        "capacity",
        "busy",
        "leader",
    }
    status = d.call_sync("status")
    assert status["node"] == {"id": "solo", "leader": True} and status["fleet"] == {"nodes": 1}
    out = subprocess.run(
        [str(BIN / "automationctl"), "--socket", str(d.socket), "workers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0 and "solo" in out.stdout and "LEADER" in out.stdout
    assert d.stop() == 0
