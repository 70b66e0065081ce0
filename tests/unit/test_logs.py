"""obs/logs.py: JSON and console rendering on stderr, level filtering, stdlib routing."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from automationd.obs.logs import configure_logging, parse_level, reset_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every test configures logging for itself; leave the process as we found it."""
    yield
    structlog.contextvars.clear_contextvars()
    reset_logging()


def _json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_renders_event_with_keys_level_and_utc_timestamp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A json-configured logger writes one compact JSON object per event to stderr."""
    configure_logging("json", "info")
    structlog.get_logger().info("run.finished", run_id="r-1", duration_s=1.5)
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert ", " not in line and '": ' not in line  # compact separators
    record = json.loads(line)
    assert record["event"] == "run.finished"
    assert record["run_id"] == "r-1"
    assert record["duration_s"] == 1.5
    assert record["level"] == "info"
    stamp = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == dt.timedelta(0)


def test_json_merges_contextvars_and_formats_exceptions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bound contextvars appear on every event, and log.exception carries the traceback."""
    configure_logging("json", "info")
    structlog.contextvars.bind_contextvars(job="sync")
    log = structlog.get_logger()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("run.crashed")
    [record] = _json_lines(capsys.readouterr().err)
    assert record["job"] == "sync"
    assert record["level"] == "error"
    assert "Traceback" in record["exception"] and "RuntimeError: boom" in record["exception"]


def test_console_renderer_prints_event_and_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """The console format prints the event name and key=value pairs on one line."""
    configure_logging("console", "debug")
    structlog.get_logger().debug("scheduler.woke", due=3)
    err = capsys.readouterr().err
    assert "scheduler.woke" in err
    assert "due=3" in err
    assert "{" not in err


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("WARNING", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_level_filters_lower_events(
    capsys: pytest.CaptureFixture[str], level: str, shown: list[str]
) -> None:
    """Events below the configured level are dropped; the rest are written."""
    configure_logging("json", level)
    log = structlog.get_logger()
    log.debug("x.debug")
    log.info("x.info")
    log.warning("x.warning")
    log.error("x.error")
    assert [r["level"] for r in _json_lines(capsys.readouterr().err)] == shown


def test_stdlib_warnings_use_the_same_renderer_and_access_log_is_silent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """stdlib records at WARNING+ come out as JSON with the logger name; INFO and access don't."""
    configure_logging("json", "info")
    logging.getLogger("aiohttp.server").warning("Error handling request")
    logging.getLogger("aiohttp.server").info("not shown")
    logging.getLogger("aiohttp.access").warning("GET /metrics 200")
    [record] = _json_lines(capsys.readouterr().err)
    assert record["event"] == "Error handling request"
    assert record["logger"] == "aiohttp.server"
    assert record["level"] == "warning"


def test_configuring_twice_does_not_duplicate_stdlib_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second configure_logging replaces the stdlib handler instead of adding another."""
    configure_logging("json", "info")
    configure_logging("json", "info")
    logging.getLogger("asyncio").error("once")
    assert len(_json_lines(capsys.readouterr().err)) == 1


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "loud")])
def test_bad_format_or_level_is_rejected(fmt: str, level: str) -> None:
    """An unknown format or level raises ValueError naming the bad value."""
    with pytest.raises(ValueError, match=r"xml|loud"):
        configure_logging(fmt, level)


def test_parse_level_maps_names() -> None:
    """Level names are case-insensitive and map onto stdlib numbers."""
    assert parse_level("Info") == logging.INFO
    assert parse_level("warn") == logging.WARNING


# --- journald: sd-daemon priority prefixes -----------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_journal_lines_carry_their_syslog_priority(
    capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """With the journal as stderr, each line starts with <7> debug … <2> critical, in both
    formats, and stdlib records get the prefix too."""
    configure_logging(fmt, "debug", journal=True)
    log = structlog.get_logger()
    log.debug("x.debug")
    log.info("x.info")
    log.warning("x.warning")
    log.error("x.error")
    log.critical("x.critical")
    logging.getLogger("aiohttp.server").warning("x.stdlib")
    lines = capsys.readouterr().err.splitlines()
    prefixes = [line[:3] for line in lines]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>", "<2>", "<4>"], lines
    for line, name in zip(lines, ["debug", "info", "warning", "error", "critical"], strict=False):
        assert f"x.{name}" in line
    if fmt == "json":
        assert [json.loads(line[3:])["level"] for line in lines][:2] == ["debug", "info"]


def test_journal_prefix_on_every_line_of_a_console_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A console exception spans lines; each is its own journal entry, so each is prefixed."""
    configure_logging("console", "info", journal=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("run.crashed")
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)


def test_no_prefix_without_the_journal(capsys: pytest.CaptureFixture[str]) -> None:
    """Outside systemd (journal=False) lines are plain."""
    configure_logging("json", "info", journal=False)
    structlog.get_logger().warning("x.plain")
    assert capsys.readouterr().err.startswith("{")


def test_journal_stream_must_match_stderr(tmp_path: Any) -> None:
    """JOURNAL_STREAM counts only when its DEVICE:INODE is the stream's own (a child whose
    stderr was redirected must not print prefixes into a file)."""
    import os

    from automationd.obs.logs import journal_stream

    with open(tmp_path / "a.log", "w") as a, open(tmp_path / "b.log", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert journal_stream(env, a) is True
        assert journal_stream(env, b) is False
        assert journal_stream({}, a) is False
        assert journal_stream({"JOURNAL_STREAM": "garbage"}, a) is False


def test_console_hides_none_values(capsys: pytest.CaptureFixture[str]) -> None:
    """`error=None` is left out of console lines; JSON keeps the key as null."""
    configure_logging("console", "info")
    structlog.get_logger().info("run.finished", error=None, state="ok")
    err = capsys.readouterr().err
    assert "state=ok" in err and "error" not in err and "None" not in err
    configure_logging("json", "info")
    structlog.get_logger().info("run.finished", error=None)
    assert _json_lines(capsys.readouterr().err)[0]["error"] is None
