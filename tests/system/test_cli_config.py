"""The real ``automationd`` command on good and broken configs (subprocesses, no daemon).

A broken config must give exit code 2 and exactly one stderr line naming the file and the
key, from both ``check-config`` and ``run`` (which never starts the daemon then).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_config_errors import BROKEN, BROKEN_TOML, SYSTEM_CASES
from tests.unit.test_config_load import JOB

ROOT = Path(__file__).resolve().parents[2]
FIRE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[+-]\d\d:\d\d|Z)")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def run_all(commands: list[list[str]], cwd: Path) -> list[Result]:
    """Start every command at once (each is mostly interpreter start-up), then collect."""
    procs = [
        subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(Result(proc.returncode, out, err))
    return results


def test_broken_configs_exit_2_with_one_line(tmp_path: Path, bin_dir: Path) -> None:
    """1. Write each broken config (bad keys, types, units, cron, zone, TOML, callable).
    2. Run `automationd check-config FILE` and `automationd run --config FILE` on each.
    Result: exit 2, stdout empty, stderr exactly one line with the file name and key path,
    and never a traceback."""
    exe = str(bin_dir / "automationd")
    cases = [(case, text, key) for case, text, key, _ in BROKEN if case in SYSTEM_CASES]
    cases.append(("broken-toml", BROKEN_TOML, "invalid TOML"))
    commands, expected = [], []
    for case, text, key in cases:
        path = tmp_path / f"{case}.toml"
        path.write_text(text)
        for cmd in ([exe, "check-config", path.name], [exe, "run", "--config", path.name]):
            commands.append(cmd)
            expected.append((cmd[1], path.name, key))
    for (command, name, key), result in zip(expected, run_all(commands, tmp_path), strict=True):
        where = f"{command} {name}"
        assert result.code == 2, f"{where}: exit {result.code}, stderr {result.stderr!r}"
        assert "Traceback" not in result.stderr, where
        lines = result.stderr.splitlines()
        assert len(lines) == 1, f"{where}: {result.stderr!r}"
        assert lines[0].startswith(f"{name}: {key}"), f"{where}: {lines[0]!r}"
        assert result.stdout == "", where


def test_missing_config_file(tmp_path: Path, bin_dir: Path) -> None:
    """A config path that does not exist is exit 2 with one line, for both commands."""
    exe = str(bin_dir / "automationd")
    results = run_all(
        [[exe, "check-config", "nope.toml"], [exe, "run", "--config", "nope.toml"]], tmp_path
    )
    for result in results:
        assert result.code == 2
        assert result.stderr == "nope.toml: cannot read: No such file or directory\n"


GOOD = (
    '[daemon]\ntimezone = "Europe/Berlin"\n\n'
    '[[jobs]]\nname = "sync-inventory"\nschedule = "0 */6 * * *"\n'
    'action = { type = "exec", argv = ["/bin/true"] }\n\n'
    '[[jobs]]\nname = "tokyo"\nschedule = "@daily"\ntimezone = "Asia/Tokyo"\non = "x.*"\n'
    'action = { type = "exec", argv = ["/bin/true"] }\n\n'
    '[[jobs]]\nname = "ticker"\nschedule = "@every 15m"\n'
    'action = { type = "exec", argv = ["/bin/true"] }\n\n'
    '[[jobs]]\nname = "on-event"\non = "inventory.changed"\n'
    'action = { type = "exec", argv = ["/bin/true"] }\n'
)


def test_check_config_prints_three_fires_per_job(tmp_path: Path, bin_dir: Path) -> None:
    """check-config on a valid file exits 0 and lists each job: scheduled ones with their
    next 3 fires in the job's zone (`2026-12-02 19:32:00+01:00`), event ones with their glob."""
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    (result,) = run_all([[str(bin_dir / "automationd"), "check-config", str(path)]], tmp_path)
    assert (result.code, result.stderr) == (0, "")
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}

    sync = lines["sync-inventory"]
    fires = FIRE.findall(sync)
    assert len(fires) == 3
    assert "0 */6 * * *" in sync and "Europe/Berlin" in sync
    assert all(f[11:19] in ("00:00:00", "06:00:00", "12:00:00", "18:00:00") for f in fires)
    assert all(f.endswith(("+01:00", "+02:00")) for f in fires)

    tokyo = lines["tokyo"]
    assert len(FIRE.findall(tokyo)) == 3
    assert all(f.endswith(" 00:00:00+09:00") for f in FIRE.findall(tokyo))
    assert tokyo.rstrip().endswith("on: x.*")

    assert len(FIRE.findall(lines["ticker"])) == 3
    assert lines["on-event"].split()[1:] == ["on:", "inventory.changed"]
    assert FIRE.findall(lines["on-event"]) == []
    assert "OK (4 jobs, 0 services)" in result.stdout


def test_shipped_configs_are_valid(bin_dir: Path) -> None:
    """The demo and production example configs in etc/ pass check-config."""
    exe = str(bin_dir / "automationd")
    results = run_all(
        [
            [exe, "check-config", "etc/automationd.toml"],
            [exe, "check-config", "etc/automationd.production.toml"],
        ],
        ROOT,
    )
    for result in results:
        assert (result.code, result.stderr) == (0, ""), result.stderr
        assert "OK (" in result.stdout


def test_version_and_usage(tmp_path: Path, bin_dir: Path) -> None:
    """--version prints the installed version on stdout; a missing subcommand is a usage
    error (2)."""
    from automationd import __version__

    exe = str(bin_dir / "automationd")
    version, no_command = run_all([[exe, "--version"], [exe]], tmp_path)
    assert (version.code, version.stdout, version.stderr) == (0, f"automationd {__version__}\n", "")
    assert no_command.code == 2 and "usage:" in no_command.stderr


def test_check_config_without_file_checks_the_default_run_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config` with no FILE reads the very file `run` defaults to."""
    from automationd import cli

    path = tmp_path / "automationd.toml"
    path.write_text(GOOD)
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", path)
    assert cli.build_parser().parse_args(["run"]).config == path
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out.endswith(f"{path}: OK (4 jobs, 0 services)\n")
    path.write_text("[daemon]\nbogus = 1\n")
    assert cli.main(["check-config"]) == 2
    assert capsys.readouterr().err.startswith(f"{path}: daemon.bogus")


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_error_names_the_path_as_given(tmp_path: Path, bin_dir: Path, command: str) -> None:
    """The message repeats the path the operator typed, so it can be pasted back."""
    sub = tmp_path / "conf.d"
    sub.mkdir()
    (sub / "x.toml").write_text(JOB + "retries = -1\n")
    argv = [str(bin_dir / "automationd"), command]
    argv += ["conf.d/x.toml"] if command == "check-config" else ["--config", "conf.d/x.toml"]
    (result,) = run_all([argv], tmp_path)
    assert result.code == 2
    assert result.stderr == "conf.d/x.toml: jobs[0].retries: must be at least 0, got -1\n"


def test_describe_job_marks_dst_gap(tmp_path: Path) -> None:
    """A Berlin 02:30 job over the March 2027 change shows the moved fire with its DST note,
    in local time with the summer offset."""
    from automationd.cli import describe_job
    from automationd.config.load import load_config
    from automationd.units import parse_rfc3339

    path = tmp_path / "dst.toml"
    path.write_text(
        '[[jobs]]\nname = "nightly"\nschedule = "30 2 * * *"\ntimezone = "Europe/Berlin"\n'
        'action = { type = "exec", argv = ["/bin/true"] }\n'
    )
    job = load_config(path).jobs[0]
    text = describe_job(job, parse_rfc3339("2027-03-27T12:00:00+01:00"))
    assert text == (
        "30 2 * * *  Europe/Berlin  next: 2027-03-28 03:00:00+02:00 [dst-gap], "
        "2027-03-29 02:30:00+02:00, 2027-03-30 02:30:00+02:00"
    )


def test_describe_exhausted_one_shot(tmp_path: Path) -> None:
    """A one-shot @at job in the past lists no fires instead of failing."""
    from automationd.cli import describe_job
    from automationd.config.load import load_config
    from automationd.units import parse_rfc3339

    path = tmp_path / "at.toml"
    path.write_text(
        '[[jobs]]\nname = "once"\nschedule = "@at 2026-01-01T00:00:00Z"\n'
        'action = { type = "exec", argv = ["/bin/true"] }\n'
    )
    job = load_config(path).jobs[0]
    assert describe_job(job, parse_rfc3339("2026-06-01T00:00:00Z")).endswith("next: (none)")
