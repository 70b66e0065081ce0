"""Schedules: parse once, then answer "when is the next fire strictly after t?" in epoch seconds.

Forms (SPEC §2): 5-field cron, 6-field cron with seconds first, ``@hourly``-style names,
``@every DURATION`` (at least 1 s; anchored to the previous scheduled fire, so the scheduler
calls ``next_after(prev_fire)`` and gets ``prev_fire + interval``) and ``@at RFC3339`` (must carry
an offset; exhausted once it has passed).

DST rules for cron, evaluated in the schedule's zone (see ``dst.py`` for segments):
- a local time inside a spring-forward gap fires once, at the first valid instant after the
  gap (the transition instant; Berlin 02:30 on the March change fires at 03:00 local). Several
  gap times collapse into that one fire;
- a local time repeated by a fall-back fold fires once, on the first pass, unless the hour
  field covers all 24 hours (``*``, ``*/1``, ``0-23``), which keeps firing through both passes,
  so ``*/15 * * * *`` fires every 15 minutes of real time through the repeated hour.

Search walks segments forward: inside a segment local time = UTC + offset is a bijection, so
the next local match maps straight back to UTC; at a segment start we first check the gap
(any match inside it → fire at the transition) and skip the fold's second pass unless
``hour_star``. Cron fires are whole seconds.

Schedules are shared: ``parse_schedule`` caches by (text, zone key), and each schedule keeps a
small memo of recent ``next_after`` answers, because thousands of jobs on one expression ask the
same question every tick.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from zoneinfo import ZoneInfo

from automationd.core.cron import (
    EPOCH_ORDINAL,
    MAX_YEAR,
    NAMED_SCHEDULES,
    CronSpec,
    expand_named,
    parse_cron,
)
from automationd.core.dst import ZoneTable, zone_table
from automationd.units import parse_duration, parse_rfc3339

MIN_EVERY = 1.0  # seconds; shorter @every intervals are rejected
DST_GAP = "dst-gap"
DST_FOLD = "dst-fold"
_MEMO_SIZE = 8
_MAX_T = (dt.date(MAX_YEAR, 1, 1).toordinal() - EPOCH_ORDINAL) * 86400


class Schedule:
    """A parsed schedule. Immutable by convention (the only mutable part is a private memo)."""

    __slots__ = ("_memo", "interval", "kind", "text")

    def __init__(self, text: str, kind: str, interval: float | None = None) -> None:
        self.text = text
        self.kind = kind  # "cron" | "every" | "at"
        self.interval = interval  # seconds, for @every
        self._memo: dict[float, float | None] = {}

    def next_after(self, after: float) -> float | None:
        """First fire strictly after ``after`` (epoch seconds), or None when exhausted."""
        memo = self._memo
        if after in memo:
            return memo[after]
        if not math.isfinite(after):
            raise ValueError(f"next_after needs a finite time, got {after!r}")
        result = self._next(after)
        if len(memo) >= _MEMO_SIZE:
            del memo[next(iter(memo))]
        memo[after] = result
        return result

    def dst_note(self, fire: float) -> str | None:
        """``"dst-gap"`` if ``fire`` was moved by a spring-forward gap, ``"dst-fold"`` if it
        lies in a repeated (fall-back) hour, else None. Only cron schedules get notes."""
        return None

    def _next(self, after: float) -> float | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.text!r}>"


class CronSchedule(Schedule):
    """A cron expression evaluated in a time zone with the SPEC's DST rules."""

    __slots__ = ("_spec", "_zone", "tz")

    def __init__(self, text: str, spec: CronSpec, tz: ZoneInfo) -> None:
        super().__init__(text, "cron")
        self._spec = spec
        self._zone: ZoneTable = zone_table(tz)
        self.tz = tz

    def _next(self, after: float) -> float | None:
        t = math.floor(after) + 1
        next_local = self._spec.next_local
        hour_star = self._spec.hour_star
        segment = self._zone.segment
        while t < _MAX_T:
            start, end, off, prev = segment(t)
            if t == start and off > prev and next_local(start + prev, start + off) >= 0:
                return float(start)  # a gap time fires at the first instant after the gap
            lo = t + off
            if off < prev and not hour_star and lo < start + prev:
                lo = start + prev  # second pass of a fold: already fired on the first
            local = next_local(lo, end + off)
            if local >= 0:
                return float(local - off)
            t = end
        return None

    def dst_note(self, fire: float) -> str | None:
        t = math.floor(fire)
        if t != fire:
            return None
        start, end, off, prev = self._zone.segment(t)
        if t == start and off > prev and self._spec.next_local(start + prev, start + off) >= 0:
            return DST_GAP
        local = t + off
        if off < prev and local < start + prev:
            return DST_FOLD  # second pass
        nxt = self._zone.segment(end)
        if nxt.off < off and local >= end + nxt.off:
            return DST_FOLD  # first pass
        return None


class EverySchedule(Schedule):
    """``@every D``: fires every D seconds counted from the previous scheduled fire."""

    __slots__ = ()

    def next_after(self, after: float) -> float | None:
        assert self.interval is not None
        return after + self.interval


class AtSchedule(Schedule):
    """``@at TIME``: fires once."""

    __slots__ = ("at",)

    def __init__(self, text: str, at: float) -> None:
        super().__init__(text, "at")
        self.at = at

    def next_after(self, after: float) -> float | None:
        return self.at if self.at > after else None


def parse_schedule(text: str, tz: ZoneInfo) -> Schedule:
    """Parse a schedule string (SPEC §2). Raises ValueError with an operator-facing message.

    Results are cached by (text, zone key): jobs with the same expression share one object.
    """
    if not isinstance(text, str):
        raise ValueError(f"schedule must be a string, got {type(text).__name__}")
    if tz.key is None:  # a zone loaded from a file: no key to cache under
        return _parse(text, tz)
    return _parse_cached(text, tz.key)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str, key: str) -> Schedule:
    return _parse(text, ZoneInfo(key))


def _parse(text: str, tz: ZoneInfo) -> Schedule:
    s = " ".join(text.split())
    if not s:
        raise ValueError("empty schedule")
    if not s.startswith("@"):
        return CronSchedule(s, parse_cron(s), tz)
    head, _, arg = s.partition(" ")
    head = head.lower()
    if head == "@every":
        return _parse_every(s, arg)
    if head == "@at":
        return _parse_at(s, arg)
    cron = expand_named(head)
    if cron is None or arg:
        known = ", ".join((*NAMED_SCHEDULES, "@every DURATION", "@at TIME"))
        raise ValueError(f"unknown schedule {s!r} (expected cron fields or one of {known})")
    return CronSchedule(s, parse_cron(cron), tz)


def _parse_every(text: str, arg: str) -> Schedule:
    if not arg:
        raise ValueError(f"{text!r}: @every needs a duration such as '15m'")
    try:
        interval = parse_duration(arg)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if interval < MIN_EVERY:
        raise ValueError(f"{text!r}: @every interval must be at least 1s")
    return EverySchedule(text, "every", interval)


def _parse_at(text: str, arg: str) -> Schedule:
    try:
        at = parse_rfc3339(arg)
    except ValueError:
        raise ValueError(
            f"{text!r}: @at needs an RFC 3339 time with an offset, "
            "such as 2026-12-01T10:00:00+01:00"
        ) from None
    return AtSchedule(text, at)
