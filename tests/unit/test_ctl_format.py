"""automationctl's human output: one time format, humanised durations, aligned blocks,
long errors wrapped (or whole with --wide), the jobs list's last run as time and outcome;
and the ``--version`` line of both commands."""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest

from automationd import __version__, cli, ctl
from automationd.ctl import output_style
from automationd.ctl_args import Version
from automationd.ctl_format import Style, clock_time, relative, span, table, use_style, when
from automationd.ctl_render import job_detail, jobs_table, runs_table
from automationd.units import parse_rfc3339

NOW = parse_rfc3339("2026-12-02T19:32:00Z")
LONG = (
    "retryable: ClientConnectorError: Cannot connect to host api.example.com:443 ssl:default "
    "[Connect call failed ('203.0.113.7', 443)] after 3 attempts"
)


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone is Europe/Berlin for the test."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (59.9, "59s"), (240, "4m"), (3599, "59m"), (3600, "1h"),
     (8100, "2h15m"), (11 * 3600 + 60, "11h"), (3 * 86400 + 4 * 3600, "3d4h"),
     (12 * 86400 + 3600, "12d"), (-300, "5m")],
)  # fmt: skip
def test_span_two_units_at_most(seconds: float, text: str) -> None:
    """Durations read as a person says them: the largest unit, and the next one while small."""
    assert span(seconds) == text


def test_relative_in_and_ago() -> None:
    """Future times read `in 4m`, past ones `3h ago`, within a second `now`."""
    assert relative(NOW + 240, NOW) == "in 4m"
    assert relative(NOW - 3 * 3600, NOW) == "3h ago"
    assert relative(NOW + 0.4, NOW) == "now"


def test_utc_is_the_default_format() -> None:
    """Outside a terminal every time is `YYYY-MM-DD HH:MM:SSZ`, milliseconds dropped."""
    assert when("2026-12-02T19:32:00.123Z") == "2026-12-02 19:32:00Z"
    assert when(None) == "-"
    assert when("not a time") == "not a time"
    with use_style(Style(utc=True, now=NOW)):
        assert when("2026-12-02T19:36:00Z", rel=True) == "2026-12-02 19:36:00Z (in 4m)"


def test_local_time_carries_its_offset(berlin: None) -> None:
    """On a terminal (utc False) times are local with their offset; DST changes the offset."""
    with use_style(Style(utc=False, now=NOW)):
        assert when("2026-12-02T19:32:00Z") == "2026-12-02 20:32:00+01:00"
        assert when("2026-07-01T12:00:00Z") == "2026-07-01 14:00:00+02:00"
    import zoneinfo

    assert clock_time(NOW, zoneinfo.ZoneInfo("America/St_Johns")) == "2026-12-02 16:02:00-03:30"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_style_follows_the_terminal_and_flags() -> None:
    """A terminal gets local time and wrapping; a pipe UTC and whole lines; --utc/--wide win."""
    ns = argparse.Namespace(utc=False, wide=False)
    piped = output_style(ns, io.StringIO())
    assert (piped.utc, piped.width, piped.wide) == (True, None, False)
    tty = output_style(ns, _Tty())
    assert tty.utc is False and tty.width is not None
    forced = output_style(argparse.Namespace(utc=True, wide=True), _Tty())
    assert (forced.utc, forced.width, forced.wide) == (True, None, True)


def test_long_error_wraps_under_its_column_on_a_terminal() -> None:
    """The last column wraps to the terminal's width, continuation lines under its start,
    and nothing of the error is lost."""
    with use_style(Style(width=80)):
        text = table(["ID", "STATE", "ERROR"], [["r1", "failed", LONG]])
    lines = text.splitlines()
    assert len(lines) > 2 and all(len(line) <= 80 for line in lines)
    start = lines[0].index("ERROR")
    assert all(line[:start].strip() == "" for line in lines[2:])
    assert " ".join(line[start:] for line in lines[1:]) == LONG


@pytest.mark.parametrize("style", [Style(wide=True, width=80), Style(width=None)])
def test_wide_or_piped_prints_long_values_whole(style: Style) -> None:
    """With --wide, or when stdout is not a terminal, the error is one whole line, and with
    --wide even the cells that are otherwise cut stay whole."""
    payload = {"k": "v" * 100}
    with use_style(style):
        text = table(["ID", "PAYLOAD", "ERROR"], [["r1", _cell(payload), LONG]])
    assert len(text.splitlines()) == 2 and LONG in text
    assert ("v" * 100 in text) is style.wide


def _cell(v: Any) -> str:
    from automationd.ctl_format import cell

    return cell(v)


JOB: dict[str, Any] = {
    "name": "sync",
    "description": "copy prices",
    "schedule": "*/5 * * * *",
    "on": None,
    "state": "enabled",
    "source": "config",
    "next_run": "2026-12-02T19:35:00.000Z",
    "last_run": "01JRUN0000000000000000000A",
    "last_run_state": "failed",
    "last_run_at": "2026-12-02T19:30:02.500Z",
    "last_success": None,
    "run_count": 12,
    "service": "ads_api",
    "timezone": "UTC",
    "retries": 3,
    "action": "http",
    "spec": {
        "name": "sync",
        "retries": 3,
        "action": {"type": "http", "url": "https://api.example/x"},
    },
}


def test_jobs_list_last_run_is_time_and_outcome() -> None:
    """LAST RUN shows when the last run ended and how, not its id; NEXT RUN is humanised."""
    with use_style(Style(now=NOW)):
        header, row = jobs_table([JOB]).splitlines()
    col = header.index("LAST RUN")
    assert row[col:].startswith("2026-12-02 19:30:02Z failed")
    assert "01JRUN" not in row
    assert "2026-12-02 19:35:00Z (in 3m)" in row
    no_runs = {**JOB, "last_run": None, "last_run_state": None, "last_run_at": None}
    header, row = jobs_table([no_runs]).splitlines()
    assert row[header.index("LAST RUN") :].startswith("-")


def test_jobs_show_is_one_aligned_block() -> None:
    """Every key/value line of `jobs show` puts its value in the same column; the full
    action from the spec is shown; a null last_success is left out."""
    with use_style(Style(now=NOW)):
        text = job_detail(JOB)
    lines = text.splitlines()
    column = {len(line) - len(line.split(maxsplit=1)[1]) for line in lines}
    assert len(column) == 1, text
    values = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines}
    assert values["last_run"] == (
        "2026-12-02 19:30:02Z failed (1m ago), run 01JRUN0000000000000000000A"
    )
    assert values["spec.action"] == '{"type":"http","url":"https://api.example/x"}'
    assert "last_success" not in values and "spec.retries" not in values


def test_runs_list_ends_with_the_error() -> None:
    """The runs table's last column is the run's error, kind and message."""
    run = {"id": "r1", "job": "sync", "state": "failed", "error": {"kind": "fatal", "message": "x"}}
    header, row = runs_table([run]).splitlines()
    assert header.split()[-1] == "ERROR" and row.endswith("fatal: x")


@pytest.mark.parametrize("module", [cli, ctl])
def test_both_commands_share_one_version_flag(
    module: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """automationd and automationctl use the one ``--version`` action (ctl_args.Version):
    each prints its own name and the installed version, then exits 0."""
    parser = module.build_parser()
    flag = next(a for a in parser._actions if "--version" in a.option_strings)
    assert type(flag) is Version
    with pytest.raises(SystemExit) as ei:
        parser.parse_args(["--version"])
    assert ei.value.code in (0, None)
    assert capsys.readouterr().out == f"{parser.prog} {__version__}\n"
