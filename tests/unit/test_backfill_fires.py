"""The fire times a backfill window holds (core/backfill.py): [since, until), in order."""

from __future__ import annotations

import zoneinfo

import pytest

from automationd.core.backfill import MAX_FIRES, fires_between
from automationd.core.schedule import parse_schedule
from automationd.units import parse_rfc3339

UTC = zoneinfo.ZoneInfo("UTC")


def t(text: str) -> float:
    return parse_rfc3339(text)


@pytest.mark.parametrize(
    ("schedule", "since", "until", "count", "first", "last"),
    [
        # an aligned hour of */5: 10:00 is in, 11:00 is not
        ("*/5 * * * *", "2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z", 12, "10:00", "10:55"),
        # not aligned: still 12
        ("*/5 * * * *", "2026-01-05T10:02:30Z", "2026-01-05T11:02:30Z", 12, "10:05", "11:00"),
        ("@hourly", "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z", 24, "00:00", "23:00"),
        ("0 12 * * *", "2026-01-05T12:00:00.5Z", "2026-01-06T00:00:00Z", 0, None, None),
        ("*/10 * * * * *", "2026-01-05T10:00:00Z", "2026-01-05T10:01:00Z", 6, "10:00", "10:00"),
    ],
)
def test_cron_windows_hold_the_fires_between_since_and_until(
    schedule: str, since: str, until: str, count: int, first: str | None, last: str | None
) -> None:
    """Fires ``f`` with ``since <= f < until`` for cron schedules, in time order."""
    fires = fires_between(parse_schedule(schedule, UTC), t(since), t(until))
    assert len(fires) == count
    assert fires == sorted(fires)
    if first is not None and last is not None:
        assert fires[0] >= t(since) and fires[-1] < t(until)
        assert f"{int(fires[0]) // 3600 % 24:02d}:{int(fires[0]) // 60 % 60:02d}" == first
        assert f"{int(fires[-1]) // 3600 % 24:02d}:{int(fires[-1]) // 60 % 60:02d}" == last


def test_every_fires_line_up_with_the_anchor() -> None:
    """``@every 15m`` anchored at 10:07 gives 10:07, 10:22, 10:37, 10:52 in 10:00-11:00,
    also when the anchor lies after the window."""
    sched = parse_schedule("@every 15m", UTC)
    since, until = t("2026-01-05T10:00:00Z"), t("2026-01-05T11:00:00Z")
    for anchor in (t("2026-01-05T10:07:00Z"), t("2026-01-05T18:07:00Z"), t("2026-01-01T00:07:00Z")):
        fires = fires_between(sched, since, until, anchor=anchor)
        assert [round((f - since) / 60) for f in fires] == [7, 22, 37, 52]


def test_at_fires_once_inside_the_window_and_never_outside() -> None:
    """An ``@at`` schedule has one fire: in the window or not."""
    sched = parse_schedule("@at 2026-01-05T10:30:00Z", UTC)
    assert fires_between(sched, t("2026-01-05T10:00:00Z"), t("2026-01-05T11:00:00Z")) == [
        t("2026-01-05T10:30:00Z")
    ]
    assert fires_between(sched, t("2026-01-05T10:30:00.001Z"), t("2026-01-05T11:00:00Z")) == []


def test_a_huge_window_stops_one_past_the_cap() -> None:
    """A window of a per-second schedule over a day stops at ``MAX_FIRES + 1``, so the
    caller can refuse it without walking it all; empty or reversed windows hold nothing."""
    sched = parse_schedule("* * * * * *", UTC)
    since = t("2026-01-05T00:00:00Z")
    assert len(fires_between(sched, since, since + 86400)) == MAX_FIRES + 1
    assert fires_between(sched, since, since) == []
    assert fires_between(sched, since, since - 10) == []
