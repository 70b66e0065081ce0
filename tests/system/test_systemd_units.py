"""systemd/: the unit verifies cleanly, keeps its hardening score, and matches the daemon.

Exposure threshold: ``systemd-analyze security --offline=true`` must rate the shipped unit at
or below ``MAX_EXPOSURE`` = 2.0 ("OK"; it scores 1.5 when written). What is left exposed is
what a daemon that calls external services and runs operator commands needs (network, chown of
the admin socket, setrlimit in jobs); the unit's comments list each deliberate omission.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from automationd.config.model import DaemonConfig
from automationd.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "automationd.service"
TMPFILES = ROOT / "systemd" / "automationd.tmpfiles.conf"
SYSUSERS = ROOT / "systemd" / "automationd.sysusers.conf"
MAX_EXPOSURE = 2.0

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _unit_copy(tmp_path: Path, bin_dir: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointing at this venv's script (verify needs it to exist)."""
    text = UNIT.read_text().replace("/usr/bin/automationd", str(bin_dir / "automationd"))
    if extra:
        text = text.replace("\n[Service]\n", f"\n[Service]\n{extra}\n", 1)
    path = tmp_path / "automationd.service"
    path.write_text(text)
    return path


def _verify(unit: Path) -> list[str]:
    """Lines of `systemd-analyze verify` output that concern ``unit``."""
    assert ANALYZE is not None
    # verify runs `man` on each Documentation=man:… entry: our pages, as they install
    env = {**os.environ, "MANPATH": f"{ROOT / 'man'}:"}
    proc = subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False,
        env=env,
    )  # fmt: skip
    lines = (proc.stdout + proc.stderr).splitlines()
    about_unit = [line for line in lines if unit.name in line or str(unit) in line]
    assert proc.returncode == 0 or about_unit, proc.stdout + proc.stderr
    return about_unit


def _settings() -> dict[str, list[str]]:
    """The unit's key=value lines (systemd allows repeats, so values are lists)."""
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@needs_analyze
def test_unit_verifies_without_complaints(tmp_path: Path, bin_dir: Path) -> None:
    """`systemd-analyze verify` says nothing about the unit: no unknown or ignored lines."""
    assert _verify(_unit_copy(tmp_path, bin_dir)) == []


@needs_analyze
def test_verify_check_catches_an_unknown_key(tmp_path: Path, bin_dir: Path) -> None:
    """The verify check is not vacuous: a misspelt key is reported against the unit file."""
    complaints = _verify(_unit_copy(tmp_path, bin_dir, extra="ProtectSytem=strict"))
    assert any("Unknown key" in line or "ProtectSytem" in line for line in complaints), complaints


@needs_analyze
def test_unit_security_exposure_is_at_most_threshold(tmp_path: Path, bin_dir: Path) -> None:
    """`systemd-analyze security --offline=true` rates the unit at or below MAX_EXPOSURE."""
    assert ANALYZE is not None
    unit = _unit_copy(tmp_path, bin_dir)
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("systemd-analyze is older than 250 (no --offline)")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_unit_matches_the_daemon_contract() -> None:
    """Type=notify with watchdog and SIGHUP reload; stop timeout above shutdown_timeout."""
    s = _settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["ExecStart"][0].endswith("run --config /etc/automationd/automationd.toml")
    assert s["KillMode"] == ["mixed"]
    assert parse_duration(s["WatchdogSec"][0]) > 0
    assert parse_duration(s["TimeoutStopSec"][0]) > DaemonConfig().shutdown_timeout
    assert s["StateDirectory"] == ["automationd"]
    assert s["RuntimeDirectory"] == ["automationd"]
    assert Path(DaemonConfig().state_dir).name == "automationd"
    assert DaemonConfig().admin_socket.parent == Path("/run/automationd")
    assert "DynamicUser" not in s and s["User"] == ["automationd"]


@pytest.mark.needs_root
@pytest.mark.skipif(os.geteuid() != 0, reason="tmpfiles --create chowns; needs root")
@pytest.mark.skipif(
    not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")),
    reason="systemd-sysusers/systemd-tmpfiles are not installed",
)
def test_sysusers_and_tmpfiles_create_owned_directories(tmp_path: Path) -> None:
    """sysusers creates the automationd user; tmpfiles then creates both dirs 0750 owned by it."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool, conf in (("systemd-sysusers", SYSUSERS), ("systemd-tmpfiles", TMPFILES)):
        args = [tool, f"--root={root}"] + (["--create"] if tool == "systemd-tmpfiles" else [])
        proc = subprocess.run(
            [*args, str(conf)], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
    passwd = (root / "etc" / "passwd").read_text()
    uid = int(
        next(line for line in passwd.splitlines() if line.startswith("automationd:")).split(":")[2]
    )
    for d in ("run/automationd", "var/lib/automationd"):
        st = (root / d).stat()
        assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o750), d
