"""A schedule in plain words, for people: ``0 2 * * *`` in Berlin → "every day at 02:00
Europe/Berlin" (pure; the web console's jobs page and its cron preview show these).

Rules:
- Words are built from the parsed field *sets* (core/cron.py), so every spelling of one
  schedule reads the same (``*/15``, ``0,15,30,45`` and ``0-59/15`` are all "every 15
  minutes").
- A set is read as: everything, a step from the start ("every 6 hours"), one value, a short
  list, or a range. A time of day is spelled ``HH:MM`` (``HH:MM:SS`` with seconds) when there
  are at most ``_MAX_TIMES`` of them; otherwise hours and minutes are described apart.
- The zone is named whenever the hours or days are restricted (then it decides when the job
  fires); "every 5 minutes" is the same in every zone and says none.
- Anything this module does not know how to say falls back to the expression itself: the
  words may be plainer, never wrong.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

from automationd.core.cron import CronSpec, expand_named, parse_cron
from automationd.units import format_duration, parse_duration, parse_rfc3339

_MAX_TIMES = 6
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_UNITS = {"d": "day", "h": "hour", "m": "minute", "s": "second", "ms": "millisecond"}


@functools.lru_cache(maxsize=4096)
def schedule_words(text: str | None, zone: str) -> str:
    """Plain words for a schedule (SPEC §2 forms); ``""`` for a job without one."""
    if not text:
        return ""
    s = " ".join(text.split())
    head, _, arg = s.partition(" ")
    head = head.lower()
    if head == "@every":
        return f"every {_duration_words(arg)}"
    if head == "@at":
        try:
            at = dt.datetime.fromtimestamp(parse_rfc3339(arg), dt.UTC)
        except ValueError:
            return s
        return f"once, at {at:%Y-%m-%d %H:%M:%S} UTC"
    cron = expand_named(head) if head.startswith("@") else s
    if cron is None:
        return s
    try:
        spec = parse_cron(cron)
    except ValueError:
        return s
    return cron_words(spec, zone, seconds_field=len(cron.split()) == 6)


def cron_words(spec: CronSpec, zone: str, *, seconds_field: bool = False) -> str:
    days, day_restricted = _days(spec)
    time, hours_restricted = _time(spec, seconds_field)
    if days == "every day" and time.startswith("every "):
        days = ""  # "every 15 minutes", not "every day every 15 minutes"
    words = f"{days} {time}" if days else time
    if day_restricted or hours_restricted:
        words += f" {zone}"
    return words


def _duration_words(arg: str) -> str:
    try:
        text = format_duration(parse_duration(arg))
    except ValueError:
        return arg
    parts: list[str] = []
    num = ""
    unit = ""
    for ch in text + " ":
        if ch.isdigit() or ch == ".":
            if unit:
                parts.append(_count(num, unit))
                num, unit = "", ""
            num += ch
        elif ch != " ":
            unit += ch
        elif num:
            parts.append(_count(num, unit))
    if len(parts) == 1 and parts[0].startswith("1 "):
        return parts[0][2:]  # "every hour", not "every 1 hour"
    return " ".join(parts)


def _count(num: str, unit: str) -> str:
    name = _UNITS.get(unit, unit)
    return f"{num} {name}" if num == "1" else f"{num} {name}s"


# -- sets of values ------------------------------------------------------------------------


def _step(values: frozenset[int], lo: int, hi: int) -> int | None:
    """N when ``values`` is ``lo, lo+N, …`` up to ``hi`` (N > 1), else None."""
    ordered = sorted(values)
    if len(ordered) < 2 or ordered[0] != lo:
        return None
    n = ordered[1] - ordered[0]
    if n < 2 or ordered != list(range(lo, hi + 1, n)):
        return None
    return n


def _listing(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _ranges(values: frozenset[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _named(values: frozenset[int], names: Sequence[str], offset: int) -> str:
    parts = []
    for a, b in _ranges(values):
        if b - a >= 2:
            parts.append(f"{names[a - offset]} to {names[b - offset]}")
        else:
            parts.extend(names[v - offset] for v in range(a, b + 1))
    return _listing(parts)


def _numbers(values: frozenset[int]) -> str:
    parts = []
    for a, b in _ranges(values):
        if b - a >= 2:
            parts.append(f"{a} to {b}")
        else:
            parts.extend(str(v) for v in range(a, b + 1))
    return _listing(parts)


# -- days -----------------------------------------------------------------------------------


def _days(spec: CronSpec) -> tuple[str, bool]:
    """("every day" / "every Monday to Friday" / …, whether days are restricted)."""
    all_dom = len(spec.doms) == 31
    all_dow = len(spec.dows) == 7
    all_month = len(spec.months) == 12
    months = "" if all_month else f" in {_named(spec.months, _MONTH_NAMES, 1)}"
    if all_dom and all_dow:
        if all_month:
            return "every day", False
        return f"every day{months}", True
    if all_dow and len(spec.doms) == 1 and len(spec.months) == 1:
        day, month = min(spec.doms), _MONTH_NAMES[min(spec.months) - 1]
        return f"every year on {day} {month}", True
    dow = f"every {_named(spec.dows, _DAY_NAMES, 0)}" if not all_dow else ""
    dom_one = "day" if len(spec.doms) == 1 else "days"
    dom = f"on {dom_one} {_numbers(spec.doms)} of the month" if not all_dom else ""
    if all_month and dom:
        dom = dom.replace("of the month", "of every month")
    if dow and dom:
        # both restricted: classic cron fires on a day matching either (or both, if starred)
        joined = f"{dom} and {dow}" if spec.day_and else f"{dom} or {dow}"
        return f"{joined}{months}", True
    return f"{dow or dom}{months}", True


# -- times of day ---------------------------------------------------------------------------


def _time(spec: CronSpec, seconds_field: bool) -> tuple[str, bool]:
    """("at 02:00" / "every 15 minutes" / …, whether hours are restricted)."""
    secs, mins, hours = spec.seconds, spec.minutes, spec.hours
    all_h, all_m, all_s = len(hours) == 24, len(mins) == 60, len(secs) == 60
    zero_s = secs == frozenset({0})
    if all_h and all_m:
        if all_s:
            return "every second", False
        step = _step(secs, 0, 59)
        if step is not None:
            return f"every {step} seconds", False
        if zero_s:
            return "every minute", False
        return f"every minute at second {_numbers(secs)}", False
    if all_h and zero_s:
        step = _step(mins, 0, 59)
        if step is not None:
            return f"every {step} minutes", False
        return f"every hour at {_listing([f':{m:02d}' for m in sorted(mins)])}", False
    if (not all_m and zero_s) or (len(secs) == 1 and seconds_field):
        times = [(h, m) for h in sorted(hours) for m in sorted(mins)]
        if len(times) <= _MAX_TIMES:
            s = min(secs)
            fmt = [f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "") for h, m in times]
            return f"at {_listing(fmt)}", not all_h
        hstep = _step(hours, 0, 23)
        minute = f":{min(mins):02d}" if len(mins) == 1 else f"minutes {_numbers(mins)}"
        if hstep is not None and len(mins) == 1:
            return f"every {hstep} hours at {minute}", True
        return f"at {minute} past hours {_numbers(hours)}", True
    # every minute (or second) within some hours
    unit = "minute" if zero_s else "second"
    return f"every {unit} during hours {_numbers(hours)}", not all_h
