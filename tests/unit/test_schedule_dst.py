"""Cron across DST transitions, checked against a brute-force oracle (SPEC §2 DST rules).

The oracle walks local wall-clock minutes one by one, matches each against its own small cron
matcher, and maps every matching local minute to UTC instants:
- a normal minute → its one instant;
- a minute inside a spring-forward gap → the first instant whose wall clock lies past it (the
  transition instant), found by stepping UTC minutes;
- a minute repeated by a fall-back fold → the first pass, plus the second pass only when the
  hour field covers all 24 hours.
Instants are deduplicated and sorted; ``next_after`` iterated over the same window must give
exactly that list. Every 2020-2040 transition of each zone is checked deterministically for
every cron in CRONS; hypothesis adds random windows and random crons.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from automationd.core.schedule import parse_schedule

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC")
CRONS = (
    "30 2 * * *",
    "0,30 1 * * *",
    "*/15 * * * *",
    "0 * * * *",
    "15 2 * * 0",
    "*/7 2-3 * * *",
    "45 1 * * *",
    "*/10 1-2 * * *",
)
EXPECTED_TRANSITIONS = {
    "Europe/Berlin": 42,
    "America/New_York": 42,
    "Australia/Lord_Howe": 42,
    "Asia/Kolkata": 0,
    "UTC": 0,
}
YEAR0, YEAR1 = 2020, 2040
MINUTE = dt.timedelta(minutes=1)

# -- the oracle ----------------------------------------------------------------------------


def _field(text: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            a, b = (int(x) for x in base.split("-"))
        else:
            a = b = int(base)
        out.update(range(a, b + 1, int(step or 1)))
    return frozenset(out)


class OracleCron:
    """A deliberately naive 5-field matcher (Vixie day-of-month/day-of-week rule)."""

    def __init__(self, text: str) -> None:
        mi, h, dom, mon, dow = text.split()
        self.minutes = _field(mi, 0, 59)
        self.hours = _field(h, 0, 23)
        self.doms = _field(dom, 1, 31)
        self.months = _field(mon, 1, 12)
        self.dows = frozenset(d % 7 for d in _field(dow, 0, 7))
        self.day_or = not (dom.startswith("*") or dow.startswith("*"))
        self.hour_star = self.hours == frozenset(range(24))

    def matches(self, m: dt.datetime) -> bool:
        if m.minute not in self.minutes or m.hour not in self.hours or m.month not in self.months:
            return False
        dom_ok = m.day in self.doms
        dow_ok = (m.weekday() + 1) % 7 in self.dows
        return (dom_ok or dow_ok) if self.day_or else (dom_ok and dow_ok)


def _wall(t: float, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, tz).replace(tzinfo=None)


@functools.lru_cache(maxsize=256)
def _local_minutes(key: str, start: int, end: int) -> tuple[tuple[dt.datetime, float, float], ...]:
    """Each local minute around ``(start, end]`` with its first instant and its second-pass
    instant (``nan`` when it is not repeated). Shared by all crons checked on a window.

    Built by walking every UTC minute and inverting: a wall minute seen twice is a fold, a
    wall minute never seen (between seen ones) is in a gap and maps to the next instant whose
    wall clock lies past it — the transition instant."""
    tz = ZoneInfo(key)
    first_u = start - start % 60 - 3 * 3600
    seen: dict[dt.datetime, list[float]] = {}
    for u in range(first_u, end + 3 * 3600, 60):
        seen.setdefault(_wall(u, tz), []).append(float(u))
    walls = list(seen)
    m, stop = min(walls), max(walls)
    out: list[tuple[dt.datetime, float, float]] = []
    pending_gap: list[dt.datetime] = []
    while m <= stop:
        instants = seen.get(m)
        if instants is None:
            pending_gap.append(m)
        else:
            if pending_gap:
                out.extend((g, instants[0], math.nan) for g in pending_gap)
                pending_gap.clear()
            out.append((m, instants[0], instants[1] if len(instants) > 1 else math.nan))
        m += MINUTE
    return tuple(out)


def oracle(text: str, key: str, start: int, end: int) -> list[float]:
    """All fires in ``(start, end]`` by brute force."""
    cron = OracleCron(text)
    fires: set[float] = set()
    for m, first, second in _local_minutes(key, start, end):
        if cron.matches(m):
            fires.add(first)
            if cron.hour_star and second == second:  # second pass, unless nan
                fires.add(second)
    return sorted(f for f in fires if start < f <= end)


def actual(text: str, key: str, start: int, end: int) -> list[float]:
    sched = parse_schedule(text, ZoneInfo(key))
    out: list[float] = []
    t = sched.next_after(start)
    while t is not None and t <= end:
        out.append(t)
        t = sched.next_after(t)
    return out


def explain(key: str, fires: list[float]) -> list[str]:
    tz = ZoneInfo(key)
    return [dt.datetime.fromtimestamp(f, tz).isoformat() for f in fires]


# -- transitions, enumerated independently of automationd.core.dst -------------------------


def _offset(t: int, tz: ZoneInfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(t, tz).utcoffset()


@functools.cache
def transitions(key: str) -> tuple[int, ...]:
    """UTC instants where ``key`` changes offset in YEAR0..YEAR1 (daily probe, then bisect)."""
    tz = ZoneInfo(key)
    t = int(dt.datetime(YEAR0, 1, 1, tzinfo=dt.UTC).timestamp())
    stop = int(dt.datetime(YEAR1 + 1, 1, 1, tzinfo=dt.UTC).timestamp())
    found = []
    while t < stop:
        if _offset(t, tz) != _offset(t + 86400, tz):
            lo, hi = t, t + 86400
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset(mid, tz) == _offset(lo, tz) else (lo, mid)
            found.append(hi)
        t += 86400
    return tuple(found)


ALL_TRANSITIONS = [(key, t) for key in ZONES for t in transitions(key)]


def test_transition_enumeration_covers_every_zone() -> None:
    """2020-2040 holds 42 transitions in each DST zone and none in Kolkata or UTC."""
    assert {key: len(transitions(key)) for key in ZONES} == EXPECTED_TRANSITIONS


@pytest.mark.parametrize(("key", "transition"), ALL_TRANSITIONS)
def test_every_transition_matches_the_oracle(key: str, transition: int) -> None:
    """Over the 3 days around each transition, every cron fires exactly as the oracle says."""
    start, end = transition - 36 * 3600 - 1, transition + 36 * 3600
    for text in CRONS:
        want = oracle(text, key, start, end)
        got = actual(text, key, start, end)
        assert got == want, (text, explain(key, got), explain(key, want))


# -- hand-checked examples -----------------------------------------------------------------

EXAMPLES = [
    # zone, cron, after (local, offset given), expected fires (ISO with offset), dst notes
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-28T12:00:00+01:00",
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ["dst-gap", None],
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24T12:00:00+02:00",
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ["dst-fold", None],
    ),
    (
        "Europe/Berlin",
        "*/30 * * * *",
        "2026-10-25T01:45:00+02:00",
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-25T03:00:00+01:00",
        ],
        ["dst-fold", "dst-fold", "dst-fold", "dst-fold", None],
    ),
    (
        "Europe/Berlin",
        "*/30 * * * *",
        "2026-03-29T01:15:00+01:00",
        ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"],
        [None, "dst-gap", None],
    ),
    (
        "America/New_York",
        "30 2 * * *",
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ["dst-gap", None],
    ),
    (
        "America/New_York",
        "30 1 * * *",
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ["dst-fold", None],
    ),
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03T12:00:00+10:30",
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
        ["dst-gap", None],
    ),
    (
        "Australia/Lord_Howe",
        "*/15 1 * * *",
        "2026-04-05T01:20:00+11:00",
        ["2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00", "2026-04-06T01:00:00+10:30"],
        ["dst-fold", "dst-fold", None],
    ),
    (
        "Asia/Kolkata",
        "30 2 * * *",
        "2026-03-28T12:00:00+05:30",
        ["2026-03-29T02:30:00+05:30", "2026-03-30T02:30:00+05:30"],
        [None, None],
    ),
]


@pytest.mark.parametrize(("key", "text", "after", "expected", "notes"), EXAMPLES)
def test_dst_examples(
    key: str, text: str, after: str, expected: list[str], notes: list[str | None]
) -> None:
    """Gap times fire once at the end of the gap, fold times once, hour-`*` crons in both
    passes; dst_note labels each fire."""
    tz = ZoneInfo(key)
    sched = parse_schedule(text, tz)
    t: float | None = dt.datetime.fromisoformat(after).timestamp()
    got, got_notes = [], []
    for _ in expected:
        assert t is not None
        t = sched.next_after(t)
        assert t is not None
        got.append(dt.datetime.fromtimestamp(t, tz).isoformat())
        got_notes.append(sched.dst_note(t))
    assert (got, got_notes) == (expected, notes)


def test_seconds_cron_through_a_gap_and_a_fold() -> None:
    """A 6-field cron inside the gap fires once at the transition; in the fold only once."""
    tz = ZoneInfo("Europe/Berlin")
    gap = parse_schedule("30 */20 2 * * *", tz)
    t = gap.next_after(dt.datetime.fromisoformat("2026-03-29T01:59:00+01:00").timestamp())
    assert t is not None
    assert dt.datetime.fromtimestamp(t, tz).isoformat() == "2026-03-29T03:00:00+02:00"
    fold = parse_schedule("30 */20 2 * * *", tz)
    start = dt.datetime.fromisoformat("2026-10-25T01:59:00+02:00").timestamp()
    fires = []
    f = fold.next_after(start)
    while f is not None and f < start + 3 * 3600:
        fires.append(dt.datetime.fromtimestamp(f, tz).isoformat())
        f = fold.next_after(f)
    assert fires == [
        "2026-10-25T02:00:30+02:00",
        "2026-10-25T02:20:30+02:00",
        "2026-10-25T02:40:30+02:00",
    ]


# -- hypothesis: random windows, random crons ----------------------------------------------

T0 = int(dt.datetime(YEAR0, 1, 1, tzinfo=dt.UTC).timestamp())
T1 = int(dt.datetime(YEAR1, 12, 29, tzinfo=dt.UTC).timestamp())


def _items(lo: int, hi: int) -> st.SearchStrategy[str]:
    n = st.integers(lo, hi)
    return st.one_of(
        st.just("*"),
        st.integers(2, max(2, (hi - lo) // 2)).map(lambda s: f"*/{s}"),
        st.lists(n, min_size=1, max_size=3, unique=True).map(lambda v: ",".join(map(str, v))),
        st.tuples(n, n).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.tuples(n, n, st.integers(1, 7)).map(lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"),
    )


crons = st.tuples(
    _items(0, 59),
    _items(0, 23),
    st.one_of(st.just("*"), _items(1, 31)),
    st.one_of(st.just("*"), st.just("*"), _items(1, 12)),
    st.one_of(st.just("*"), _items(0, 6)),
).map(" ".join)

near_transition = st.sampled_from([(k, t) for k, t in ALL_TRANSITIONS]).flatmap(
    lambda kt: st.integers(-2 * 86400, 86400).map(lambda d: (kt[0], kt[1] + d))
)
anywhere = st.tuples(st.sampled_from(ZONES), st.integers(T0, T1))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=crons, where=st.one_of(near_transition, anywhere))
def test_random_crons_and_windows_match_the_oracle(text: str, where: tuple[str, int]) -> None:
    """For any cron and any one-day window (often straddling a transition), next_after agrees
    with the brute-force oracle."""
    key, start = where
    try:
        parse_schedule(text, ZoneInfo(key))
    except ValueError:
        assume(False)
    end = start + 86400
    assert actual(text, key, start, end) == oracle(text, key, start, end)


@settings(max_examples=40, deadline=None)
@given(text=st.sampled_from(CRONS), where=st.one_of(near_transition, anywhere))
def test_next_after_from_any_instant_is_the_oracles_next(text: str, where: tuple[str, int]) -> None:
    """next_after from an arbitrary (not fire-aligned, fractional) instant returns the first
    oracle fire strictly after it."""
    key, start = where
    after = start + 0.25
    want = oracle(text, key, start, start + 2 * 86400)
    want = [f for f in want if f > after]
    got = parse_schedule(text, ZoneInfo(key)).next_after(after)
    if want:
        assert got == want[0]
    else:  # a weekly cron may have no fire in the window
        assert got is not None and got > start + 2 * 86400
