"""Cron expressions parsed into lookup tables, and a matcher over *local wall-clock seconds*.

This module knows nothing about time zones: it answers "what is the first local wall-clock
second >= x that matches?" where local seconds are counted like epoch seconds but on the wall
clock (``(date.toordinal() - EPOCH_ORDINAL) * 86400 + seconds-of-day``). ``schedule.py`` maps
those to UTC instants and applies the DST rules of SPEC §2.

Rules (Vixie cron, the behaviour operators expect):
- Fields are ``second minute hour day-of-month month day-of-week``; 5-field expressions get
  ``second = 0``. Items are ``*``, ``N``, ``A-B``, each optionally ``/STEP``, comma-separated;
  ``N/STEP`` means ``N-max/STEP``. Month and weekday accept English 3-letter names; weekday
  7 is Sunday.
- Day-of-month and day-of-week: if either field *starts with* ``*`` a day must match both;
  otherwise (both restricted) a day matching either one fires.
- An expression that can never fire (``0 0 30 2 *``) is rejected at parse time by a
  month-by-month check, never by scanning years.

Why our own matcher and not croniter: croniter costs ~50 µs per step and mishandles DST; the
tables below find the next match in a few µs with bit tricks (days of a month are one int
bitmask; hours/minutes/seconds are "next allowed value" arrays).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
MAX_YEAR = 9000  # searches give up past this year (datetime tops out at 9999)

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = {n: i + 1 for i, n in enumerate(_MONTHS)}
_DAY_NAMES = {n: i for i, n in enumerate(_DAYS)}
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb: 29 in leap years
_NAMED = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
NAMED_SCHEDULES = tuple(_NAMED)


def _value(token: str, field: str, lo: int, hi: int, names: dict[str, int]) -> int:
    key = token.lower()
    if key in names:
        return names[key]
    if not token.isdigit():
        raise ValueError(f"bad {field} value {token!r}")
    v = int(token)
    if not lo <= v <= hi:
        raise ValueError(f"{field} value {v} out of range {lo}-{hi}")
    return v


def parse_field(text: str, field: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    """One cron field → the set of allowed values (raises ValueError naming the field)."""
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"empty item in {field} field {text!r}")
        rng, slash, step_s = item.partition("/")
        step = 1
        if slash:
            if not step_s.isdigit() or int(step_s) == 0:
                raise ValueError(f"bad step {step_s!r} in {field} field {text!r}")
            step = int(step_s)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, _, b_s = rng.partition("-")
            a = _value(a_s, field, lo, hi, names)
            b = _value(b_s, field, lo, hi, names)
            if a > b:
                raise ValueError(f"backwards range {rng!r} in {field} field")
        else:
            a = _value(rng, field, lo, hi, names)
            b = hi if slash else a
        values.update(range(a, b + 1, step))
    return frozenset(values)


def _next_table(allowed: frozenset[int], size: int) -> tuple[int, ...]:
    """``t[x]`` = smallest allowed value >= x, or -1; one extra slot so ``t[max+1]`` is -1."""
    out = [-1] * (size + 1)
    nxt = -1
    for x in range(size - 1, -1, -1):
        if x in allowed:
            nxt = x
        out[x] = nxt
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CronSpec:
    """Precomputed tables for one cron expression. Build with ``parse_cron``."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]
    day_and: bool  # True: a day must match dom AND dow (either field starts with '*')
    hour_star: bool  # hour field covers all 24 hours: fires through both passes of a fold
    _ns: tuple[int, ...]
    _nmi: tuple[int, ...]
    _nh: tuple[int, ...]
    _nmo: tuple[int, ...]
    _dom_mask: int
    _dow_masks: tuple[int, ...]  # by cron weekday (Sun=0) of the month's 1st: bits 1..31

    def day_mask(self, year: int, month: int) -> int:
        """Bits 1..31 set for the days of ``year-month`` that match dom/dow."""
        ordinal = dt.date(year, month, 1).toordinal()
        dim = _MAX_DAYS[month]
        if month == 2 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
            dim = 28
        dow_mask = self._dow_masks[ordinal % 7]  # ordinal 1 (0001-01-01) was a Monday
        m = self._dom_mask & dow_mask if self.day_and else self._dom_mask | dow_mask
        return m & ((2 << dim) - 2)

    def _time_of_day(self, h: int, mi: int, s: int) -> int:
        """First matching second-of-day at or after h:mi:s, or -1."""
        nh, nmi = self._nh, self._nmi
        if nh[h] == h:
            if nmi[mi] == mi:
                s2 = self._ns[s]
                if s2 >= 0:
                    return h * 3600 + mi * 60 + s2
                mi += 1
            m2 = nmi[mi]
            if m2 >= 0:
                return h * 3600 + m2 * 60 + self._ns[0]
            h += 1
        h2 = nh[h]
        if h2 < 0:
            return -1
        return h2 * 3600 + nmi[0] * 60 + self._ns[0]

    def next_local(self, start: int, limit: int) -> int:
        """First matching local second ``x`` with ``start <= x < limit``, else -1."""
        if start >= limit:
            return -1
        days, sod = divmod(start, 86400)
        d = dt.date.fromordinal(days + EPOCH_ORDINAL)
        y, mo, day = d.year, d.month, d.day
        h, rem = divmod(sod, 3600)
        mi, s = divmod(rem, 60)
        nmo = self._nmo
        while True:
            m2 = nmo[mo]
            if m2 != mo:  # month not allowed: jump to the next allowed one
                if m2 < 0:
                    y, mo = y + 1, nmo[1]
                else:
                    mo = m2
                day, h, mi, s = 1, 0, 0, 0
                if y > MAX_YEAR or _month_start(y, mo) >= limit:
                    return -1
            cand = self.day_mask(y, mo) >> day << day
            while cand:
                low = cand & -cand
                d2 = low.bit_length() - 1
                if d2 != day:
                    day, h, mi, s = d2, 0, 0, 0
                tod = self._time_of_day(h, mi, s)
                if tod >= 0:
                    x = (dt.date(y, mo, day).toordinal() - EPOCH_ORDINAL) * 86400 + tod
                    return x if x < limit else -1
                cand ^= low
                day = -1
            mo += 1
            if mo > 12:
                y, mo = y + 1, 1
            day, h, mi, s = 1, 0, 0, 0
            if y > MAX_YEAR or _month_start(y, mo) >= limit:
                return -1


def _month_start(year: int, month: int) -> int:
    return (dt.date(year, month, 1).toordinal() - EPOCH_ORDINAL) * 86400


def expand_named(text: str) -> str | None:
    """``@daily`` → ``0 0 * * *``; None for names that are not cron aliases."""
    return _NAMED.get(text.lower())


def parse_cron(text: str) -> CronSpec:
    """Parse a 5- or 6-field (seconds first) cron expression; ValueError says what is wrong."""
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise ValueError(
            f"expected 5 cron fields (or 6 with seconds first), got {len(parts)} in {text!r}"
        )
    sec_f, min_f, hour_f, dom_f, mon_f, dow_f = parts
    try:
        seconds = parse_field(sec_f, "second", 0, 59, {})
        minutes = parse_field(min_f, "minute", 0, 59, {})
        hours = parse_field(hour_f, "hour", 0, 23, {})
        doms = parse_field(dom_f, "day-of-month", 1, 31, {})
        months = parse_field(mon_f, "month", 1, 12, _MONTH_NAMES)
        dows = frozenset(d % 7 for d in parse_field(dow_f, "day-of-week", 0, 7, _DAY_NAMES))
    except ValueError as exc:
        raise ValueError(f"bad cron {text!r}: {exc}") from None
    day_and = dom_f.startswith("*") or dow_f.startswith("*")
    if day_and and not any(d <= _MAX_DAYS[m] for m in months for d in doms):
        names = ", ".join(_MONTHS[m - 1].capitalize() for m in sorted(months))
        days = ",".join(str(d) for d in sorted(doms))
        raise ValueError(f"{text!r} never fires: day {days} does not exist in {names}")
    dom_mask = sum(1 << d for d in doms)
    dow_masks = tuple(
        sum(1 << d for d in range(1, 32) if (first + d - 1) % 7 in dows) for first in range(7)
    )
    return CronSpec(
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        doms=doms,
        months=months,
        dows=dows,
        day_and=day_and,
        hour_star=len(hours) == 24,
        _ns=_next_table(seconds, 60),
        _nmi=_next_table(minutes, 60),
        _nh=_next_table(hours, 24),
        _nmo=(-1, *_next_table(months, 13)[1:]),
        _dom_mask=dom_mask,
        _dow_masks=dow_masks,
    )
