"""Pure converters for the config's units: durations, rates and RFC 3339 timestamps.

Durations are strings such as ``"250ms"``, ``"30s"``, ``"1h30m"``, ``"7d"``; rates are
``"COUNT/PERIOD"`` such as ``"10/s"`` or ``"200/1h"``. Every parse error is a ``ValueError``
whose message quotes the input, so config errors read ``bad duration '2x'``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

MAX_DURATION = 100 * 365 * 86400.0  # a longer one is a typo, and past 1e308 it is infinite
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(text: object) -> float:
    """Return seconds for a duration string; rejects negatives, empties and unknown units."""
    if not isinstance(text, str):
        raise ValueError(f"bad duration {text!r}: expected a string such as '30s'")
    s = text.strip()
    if not s or not _WHOLE.fullmatch(s):
        raise ValueError(f"bad duration {text!r}")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(s))
    if not seconds <= MAX_DURATION:  # also catches inf ("999…9s" overflows) and nan
        raise ValueError(f"bad duration {text[:40]!r}: longer than 100 years")
    return seconds


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for display (``90`` → ``"1m30s"``)."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    out = []
    rest = round(seconds, 3)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n, rest = divmod(rest, size)
        if n:
            out.append(f"{int(n)}{unit}")
    if rest or not out:
        out.append(f"{rest:g}s")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` events per ``period`` seconds."""

    count: int
    period: float
    text: str = ""

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        return self.text or f"{self.count}/{format_duration(self.period)}"


def parse_rate(text: object) -> Rate:
    """Parse ``"200/1h"``; a bare unit period means one of it (``"10/s"`` = 10 per second)."""
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"bad rate {text!r}: expected COUNT/PERIOD such as '10/s'")
    count_s, period_s = (p.strip() for p in text.split("/", 1))
    if not count_s.isdigit() or int(count_s) <= 0:
        raise ValueError(f"bad rate {text!r}: count must be a positive integer")
    if period_s in _UNIT_SECONDS:
        period_s = "1" + period_s
    try:
        period = parse_duration(period_s)
    except ValueError:
        raise ValueError(f"bad rate {text!r}: bad period {period_s!r}") from None
    if period <= 0:
        raise ValueError(f"bad rate {text!r}: period must be positive")
    return Rate(int(count_s), period, text)


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds → RFC 3339 UTC with milliseconds (``2026-11-22T13:45:00.123Z``)."""
    if ts is None:
        return None
    # Truncated to the millisecond the same way ids are (core/ids.py), never rounded up, so
    # "since <this timestamp>" always includes the record it was read from.
    ms = int(ts * 1000)
    return f"{_second(ms // 1000)}{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=256)
def _second(sec: int) -> str:
    """``2026-11-22T13:45:00.``: times rendered together mostly share their second, and
    ``strftime`` costs more than everything else in ``rfc3339`` (every answer renders one)."""
    return dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def parse_rfc3339(text: object) -> float:
    """RFC 3339 / ISO 8601 with an offset (or ``Z``) → epoch seconds."""
    if not isinstance(text, str):
        raise ValueError(f"bad timestamp {text!r}")
    try:
        d = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad timestamp {text!r}: expected RFC 3339") from None
    if d.tzinfo is None:
        raise ValueError(f"bad timestamp {text!r}: needs a UTC offset")
    return d.timestamp()
