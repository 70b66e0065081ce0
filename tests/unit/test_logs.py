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
