"""Table-driven tests of automationd.units: durations, rates and RFC 3339 timestamps."""

from __future__ import annotations

import pytest

from automationd.units import (
    Rate,
    format_duration,
    parse_duration,
    parse_rate,
    parse_rfc3339,
    rfc3339,
)

GOOD_DURATIONS = [
    ("250ms", 0.25),
    ("30s", 30.0),
    ("5m", 300.0),
    ("1h30m", 5400.0),
    ("7d", 604800.0),
    ("1w", 604800.0),
    ("1.5s", 1.5),
    ("0s", 0.0),
    ("1h0m5s", 3605.0),
    (" 2s ", 2.0),
    ("1m1ms", 60.001),
]


@pytest.mark.parametrize(("text", "seconds"), GOOD_DURATIONS)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    """Each documented duration spelling converts to the right number of seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


BAD_DURATIONS: list[object] = [
    "",
    "2x",
    "5",
    "-5s",
    "s",
    "1h 30m",
    "5 m",
    "1.s",
    "abc",
    5,
    None,
    1.5,
]


@pytest.mark.parametrize("text", BAD_DURATIONS)
def test_parse_duration_rejects(text: object) -> None:
    """Malformed durations and non-strings raise ValueError quoting the input."""
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_parse_duration_message_quotes_input() -> None:
    """The message has the exact shape config errors rely on: bad duration '2x'."""
    with pytest.raises(ValueError) as info:
        parse_duration("2x")
    assert str(info.value) == "bad duration '2x'"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (30, "30s"), (90, "1m30s"), (5400, "1h30m"), (90000, "1d1h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    """format_duration renders seconds compactly and round-trips through parse_duration."""
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


GOOD_RATES = [
    ("10/s", 10, 1.0, 10.0),
    ("200/1h", 200, 3600.0, 200 / 3600),
    ("1000/24h", 1000, 86400.0, 1000 / 86400),
    ("5/m", 5, 60.0, 5 / 60),
    ("3/250ms", 3, 0.25, 12.0),
]


@pytest.mark.parametrize(("text", "count", "period", "per_second"), GOOD_RATES)
def test_parse_rate_accepts(text: str, count: int, period: float, per_second: float) -> None:
    """COUNT/PERIOD parses into count, period seconds and a per-second refill."""
    rate = parse_rate(text)
    assert rate.count == count
    assert rate.period == pytest.approx(period)
    assert rate.per_second == pytest.approx(per_second)
    assert str(rate) == text


BAD_RATES: list[object] = ["10", "0/s", "-1/s", "x/s", "10/x", "10/0s", "/s", "10/", 10, None]


@pytest.mark.parametrize("text", BAD_RATES)
def test_parse_rate_rejects(text: object) -> None:
    """Malformed rates raise ValueError starting with 'bad rate'."""
    with pytest.raises(ValueError, match=r"^bad rate"):
        parse_rate(text)


def test_rate_str_without_text() -> None:
    """A Rate built in code still prints as COUNT/PERIOD."""
    assert str(Rate(5, 60.0)) == "5/1m"


RFC3339 = [
    ("2026-11-22T13:45:00Z", 1795355100.0),
    ("2026-11-22T13:45:00.123Z", 1795355100.123),
    ("2026-11-22T14:45:00+01:00", 1795355100.0),
    ("2026-11-22t13:45:00z", 1795355100.0),
    ("1970-01-01T00:00:00+00:00", 0.0),
]


@pytest.mark.parametrize(("text", "epoch"), RFC3339)
def test_parse_rfc3339(text: str, epoch: float) -> None:
    """RFC 3339 timestamps with Z or an offset become epoch seconds."""
    assert parse_rfc3339(text) == pytest.approx(epoch)


@pytest.mark.parametrize("text", ["2026-11-22T13:45:00", "yesterday", "", 5, None])
def test_parse_rfc3339_rejects(text: object) -> None:
    """Timestamps without an offset, or not timestamps at all, raise ValueError."""
    with pytest.raises(ValueError, match="bad timestamp"):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1795355100.123, "2026-11-22T13:45:00.123Z"),
        (1795355100.0, "2026-11-22T13:45:00.000Z"),
    ],
)
def test_rfc3339_formats_utc_millis(epoch: float, text: str) -> None:
    """rfc3339 renders UTC with milliseconds and Z, and parses back to the same instant."""
    assert rfc3339(epoch) == text
    assert parse_rfc3339(text) == pytest.approx(epoch, abs=1e-3)


def test_rfc3339_none() -> None:
    """A missing timestamp stays None (JSON null) instead of raising."""
    assert rfc3339(None) is None


@pytest.mark.parametrize("text", ["9" * 400 + "s", "9" * 30 + "d", "36501d", "1e9s"])
def test_durations_past_100_years_are_refused(text: str) -> None:
    """A duration longer than 100 years (or one that overflows to infinity) is a ValueError
    naming it, so no timeout, grace or jitter can become inf and break later arithmetic."""
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)
    assert parse_duration("36500d") == 36500 * 86400.0
