"""Schedule parsing and next_after outside DST transitions (DST lives in test_schedule_dst)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from automationd.core.schedule import AtSchedule, CronSchedule, parse_schedule

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def iso(t: float | None, tz: ZoneInfo = UTC) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, tz).isoformat()


def fires(text: str, after: str, n: int, tz: ZoneInfo = UTC) -> list[str | None]:
    sched = parse_schedule(text, tz)
    out: list[str | None] = []
    t: float | None = ts(after)
    for _ in range(n):
        assert t is not None
        t = sched.next_after(t)
        out.append(iso(t, tz))
        if t is None:
            break
    return out


@pytest.mark.parametrize(
    ("text", "kind", "interval"),
    [
        ("*/5 * * * *", "cron", None),
        ("*/10 * * * * *", "cron", None),
        ("@hourly", "cron", None),
        ("@DAILY", "cron", None),
        ("@every 15m", "every", 900.0),
        ("@every 1h30m", "every", 5400.0),
        ("@every 1s", "every", 1.0),
        ("@at 2026-12-01T10:00:00+01:00", "at", None),
        ("  0   9 * * 1-5 ", "cron", None),
    ],
)
def test_forms_parse_to_kind_and_interval(text: str, kind: str, interval: float | None) -> None:
    """Each SPEC schedule form parses to the right kind (and interval for @every)."""
    sched = parse_schedule(text, UTC)
    assert (sched.kind, sched.interval) == (kind, interval)
    assert sched.text == " ".join(text.split())


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("*/15 * * * *", "2026-05-01T10:07:00+00:00", ["10:15", "10:30", "10:45"]),
        ("*/10 * * * * *", "2026-05-01T10:00:00+00:00", ["10:00:10", "10:00:20", "10:00:30"]),
        ("0 9 * * 1-5", "2026-05-01T10:00:00+00:00", ["05-04T09", "05-05T09", "05-06T09"]),
        ("@hourly", "2026-05-01T10:00:00+00:00", ["11:00", "12:00", "13:00"]),
        ("@daily", "2026-05-01T10:00:00+00:00", ["05-02T00", "05-03T00", "05-04T00"]),
        ("@midnight", "2026-12-31T23:59:59+00:00", ["2027-01-01T00"]),
        ("@weekly", "2026-05-01T10:00:00+00:00", ["05-03T00", "05-10T00", "05-17T00"]),
        ("@monthly", "2026-05-01T10:00:00+00:00", ["06-01T00", "07-01T00", "08-01T00"]),
        ("@yearly", "2026-05-01T10:00:00+00:00", ["2027-01-01", "2028-01-01", "2029-01-01"]),
        ("@annually", "2026-05-01T10:00:00+00:00", ["2027-01-01"]),
        ("0 0 29 2 *", "2026-05-01T10:00:00+00:00", ["2028-02-29", "2032-02-29", "2036-02-29"]),
        ("0 0 31 * *", "2026-05-01T10:00:00+00:00", ["05-31T00", "07-31T00", "08-31T00"]),
        ("0 12 * jan,jul sun", "2026-05-01T10:00:00+00:00", ["07-05T12", "07-12T12"]),
        ("0 0 13 * fri", "2026-02-01T00:00:00+00:00", ["02-06T", "02-13T", "02-20T"]),  # OR
        ("0 0 */10 * mon", "2026-02-01T00:00:00+00:00", ["05-11T", "06-01T", "08-31T"]),  # AND
        ("0 0 * * 7", "2026-05-01T10:00:00+00:00", ["05-03T00"]),  # 7 is Sunday
        ("5/20 * * * *", "2026-05-01T10:00:00+00:00", ["10:05", "10:25", "10:45", "11:05"]),
        ("59 23 31 12 *", "2026-12-31T23:59:00+00:00", ["2027-12-31T23:59"]),
        ("@every 90s", "2026-05-01T10:00:00.500000+00:00", ["10:01:30.5", "10:03:00.5"]),
    ],
)
def test_next_fires_in_utc(text: str, after: str, expected: list[str]) -> None:
    """Successive next_after calls give the expected fire times (substring match on ISO)."""
    got = fires(text, after, len(expected))
    for want, have in zip(expected, got, strict=True):
        assert have is not None and want in have, (want, got)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2026-12-01T09:00:00+01:00", "2026-12-01T09:00:00+00:00"),
        ("2026-12-01T08:59:59.999000+00:00", "2026-12-01T09:00:00+00:00"),
        ("2026-12-01T10:00:00+01:00", None),
        ("2027-01-01T00:00:00+00:00", None),
    ],
)
def test_at_fires_once_strictly_after(after: str, expected: str | None) -> None:
    """@at fires at its instant when asked from before it, and is exhausted from then on."""
    sched = parse_schedule("@at 2026-12-01T10:00:00+01:00", UTC)
    assert isinstance(sched, AtSchedule)
    assert iso(sched.next_after(ts(after))) == expected


def test_next_after_is_strictly_after() -> None:
    """Asking from a fire time returns the following fire, also for fractional times."""
    sched = parse_schedule("*/10 * * * * *", UTC)
    assert sched.next_after(100.0) == 110.0
    assert sched.next_after(99.999) == 100.0
    assert sched.next_after(-5.5) == 0.0


def test_every_is_anchored_to_the_previous_fire() -> None:
    """@every returns prev_fire + interval, whatever time the caller passes."""
    sched = parse_schedule("@every 1h30m", BERLIN)
    assert sched.next_after(1000.25) == 1000.25 + 5400
    assert sched.dst_note(1000.25) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty schedule"),
        ("   ", "empty schedule"),
        ("* * * *", "expected 5 cron fields"),
        ("* * * * * * *", "got 7"),
        ("61 * * * *", "minute value 61 out of range 0-59"),
        ("* 24 * * *", "hour value 24 out of range 0-23"),
        ("* * 0 * *", "day-of-month value 0 out of range 1-31"),
        ("* * * 13 *", "month value 13 out of range 1-12"),
        ("* * * * 8", "day-of-week value 8 out of range 0-7"),
        ("60 * * * * *", "second value 60"),
        ("*/0 * * * *", "bad step '0'"),
        ("*/x * * * *", "bad step 'x'"),
        ("5-2 * * * *", "backwards range '5-2'"),
        ("1,,2 * * * *", "empty item"),
        ("* * L * *", "bad day-of-month value 'L'"),
        ("* * * * mon#2", "bad day-of-week value 'mon#2'"),
        ("* * * foo *", "bad month value 'foo'"),
        ("0 0 30 2 *", "'0 0 30 2 *' never fires: day 30 does not exist in Feb"),
        ("0 0 31 4 *", "never fires: day 31 does not exist in Apr"),
        ("0 0 31 2,4,6,9,11 *", "does not exist in Feb, Apr, Jun, Sep, Nov"),
        ("0 0 30,31 feb *", "never fires"),
        ("@every 0s", "@every interval must be at least 1s"),
        ("@every 500ms", "at least 1s"),
        ("@every", "@every needs a duration"),
        ("@every soon", "bad duration 'soon'"),
        ("@at 2026-12-01T10:00:00", "needs an RFC 3339 time with an offset"),
        ("@at tomorrow", "RFC 3339"),
        ("@reboot", "unknown schedule '@reboot'"),
        ("@daily now", "unknown schedule"),
    ],
)
def test_bad_schedules_are_rejected_with_a_clear_message(text: str, message: str) -> None:
    """Bad schedules raise ValueError whose message names the problem."""
    with pytest.raises(ValueError) as info:
        parse_schedule(text, UTC)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["0 0 30 2 1", "0 0 31 4 *", "0 0 29 2 *", "0 0 31 2,3 *", "0 0 */31 2 *"],
)
def test_impossible_date_check_respects_or_semantics(text: str) -> None:
    """A restricted weekday (OR rule) or any possible month keeps a rare date valid; only
    truly impossible dates are rejected."""
    possible = text != "0 0 31 4 *"
    if possible:
        assert parse_schedule(text, UTC).next_after(0) is not None
    else:
        with pytest.raises(ValueError, match="never fires"):
            parse_schedule(text, UTC)


def test_parsed_schedules_are_shared_per_text_and_zone() -> None:
    """The same text and zone give the same object; another zone gives another."""
    a = parse_schedule("*/7 * * * *", BERLIN)
    assert parse_schedule("*/7 * * * *", ZoneInfo("Europe/Berlin")) is a
    assert parse_schedule("*/7 * * * *", UTC) is not a


def test_memo_answers_repeats_and_stays_small() -> None:
    """Repeated next_after(same) hits the memo; the memo never grows past a few entries."""
    sched = parse_schedule("*/1 * * * * *", UTC)
    assert isinstance(sched, CronSchedule)
    first = sched.next_after(5000.0)
    for after in range(6000, 7000):
        assert sched.next_after(float(after)) == after + 1
    assert sched.next_after(5000.0) == first == 5001.0
    assert len(sched._memo) <= 8


def test_next_after_rejects_non_finite() -> None:
    """next_after(inf/nan) is a caller bug and raises instead of looping."""
    sched = parse_schedule("@hourly", UTC)
    with pytest.raises(ValueError, match="finite"):
        sched.next_after(float("inf"))


CROSS_CHECK = [
    "*/5 * * * *",
    "0 */3 * * *",
    "15,45 8-18 * * 1-5",
    "0 0 1,15 * *",
    "30 6 * 3-9 *",
    "0 0 * * sat,sun",
    "7 4 1-7 * mon",
    "0 12 31 * *",
    "0 0 29 2 *",
    "*/13 */5 * * *",
    "0 0 1 */2 *",
]


@pytest.mark.parametrize("text", CROSS_CHECK)
def test_matches_croniter_in_utc(text: str) -> None:
    """Away from DST our matcher agrees with croniter, fire for fire."""
    sched = parse_schedule(text, UTC)
    start = ts("2026-01-30T13:17:00+00:00")
    it = croniter(text, dt.datetime.fromtimestamp(start, dt.UTC))
    t: float | None = start
    for _ in range(60):
        assert t is not None
        t = sched.next_after(t)
        assert t == it.get_next(float)
