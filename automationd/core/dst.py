"""UTC-offset segments of a time zone, so cron search can reason about DST gaps and folds.

A *segment* is a stretch of UTC seconds ``[start, end)`` with one constant UTC offset. Segment
boundaries are the zone's transitions plus every UTC new-year (a pseudo boundary where the
offset does not change), which keeps each lookup inside one lazily built year table.

For a segment we also return ``prev_off``, the offset just before ``start``:
- ``off > prev_off``: ``start`` is a spring-forward; local times
  ``[start + prev_off, start + off)`` do not exist (the *gap*).
- ``off < prev_off``: ``start`` is a fall-back; local times ``[start + off, start + prev_off)``
  already happened once (the *fold*, second pass).

Transitions are found by probing the offset every 6 hours through a year and bisecting to
the second where it changes; zoneinfo has no public transition list. This assumes a zone
never changes its offset twice within 6 hours: in tzdata 2026 the closest pair of offset
changes since 1970 is about 7 days apart (Brazil 2000, Gaza's Ramadan rules).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from typing import NamedTuple

from automationd.core.cron import EPOCH_ORDINAL

_PROBE = 6 * 3600


class Segment(NamedTuple):
    start: int
    end: int
    off: int
    prev_off: int


class ZoneTable:
    """Per-zone memo of offset segments, one year at a time (built on first use)."""

    __slots__ = ("_last", "_tz", "_years")

    def __init__(self, tz: dt.tzinfo) -> None:
        self._tz = tz
        self._years: dict[int, tuple[list[int], list[int], list[int], int]] = {}
        self._last = Segment(0, 0, 0, 0)  # most searches stay inside the previous segment

    def offset(self, t: int) -> int:
        """UTC offset in seconds at UTC instant ``t``."""
        delta = dt.datetime.fromtimestamp(t, self._tz).utcoffset()
        return 0 if delta is None else delta.days * 86400 + delta.seconds

    def segment(self, t: int) -> Segment:
        """The segment containing UTC second ``t``."""
        last = self._last
        if last.start <= t < last.end:
            return last
        year = dt.date.fromordinal(t // 86400 + EPOCH_ORDINAL).year
        data = self._years.get(year)
        if data is None:
            data = self._build(year)
        bounds, offs, prevs, year_end = data
        i = bisect_right(bounds, t) - 1
        end = bounds[i + 1] if i + 1 < len(bounds) else year_end
        self._last = seg = Segment(bounds[i], end, offs[i], prevs[i])
        return seg

    def _build(self, year: int) -> tuple[list[int], list[int], list[int], int]:
        a = _year_start(year)
        b = _year_start(year + 1)
        off = self.offset
        cur = off(a)
        bounds, offs, prevs = [a], [cur], [off(a - 1)]
        t = a
        while t < b - 1:
            t2 = min(t + _PROBE, b - 1)
            if off(t2) == cur:
                t = t2
                continue
            lo, hi = t, t2  # off(lo) == cur != off(hi): bisect to the first changed second
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if off(mid) == cur:
                    lo = mid
                else:
                    hi = mid
            new = off(hi)
            bounds.append(hi)
            offs.append(new)
            prevs.append(cur)
            cur, t = new, hi
        data = (bounds, offs, prevs, b)
        self._years[year] = data
        return data


def _year_start(year: int) -> int:
    return (dt.date(year, 1, 1).toordinal() - EPOCH_ORDINAL) * 86400


_TABLES: dict[dt.tzinfo, ZoneTable] = {}


def zone_table(tz: dt.tzinfo) -> ZoneTable:
    """The shared table for ``tz`` (ZoneInfo instances are cached per key, so this is too)."""
    table = _TABLES.get(tz)
    if table is None:
        table = _TABLES[tz] = ZoneTable(tz)
    return table
