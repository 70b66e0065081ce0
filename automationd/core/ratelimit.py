"""Token bucket for one partner service: pure refill math, ``now`` is monotonic seconds.

Theory of operation:
- The bucket is stored as a point in time, not as a float that is topped up: ``empty_at`` is
  the instant at which the bucket would have held zero tokens had nothing capped it, so
  ``tokens(now) = min(burst, (now - empty_at) / interval)`` with ``interval = period / count``.
- ``empty_at`` is ``anchor + n * period / count``: an anchor plus an *integer* count of grants
  since it. Every token time is computed afresh from that product (one rounding), never by
  adding ``interval`` again and again, so a bucket that runs for months does not drift.
  The anchor moves only when the bucket is full (it cannot bank more than ``burst``) or when
  the partner tells us we hold fewer tokens (``follow``).
  (Overflow below ``_SLACK`` = 1 ns is ignored so float rounding in callers cannot creep in.)
- A grant needs ``now >= empty_at + interval`` (a whole token); it moves ``empty_at`` forward by
  one interval. ``take`` either grants (returns 0.0) or returns the exact wait, never both.

Invariant: for any window [t0, t1], grants ≤ burst + rate x (t1 - t0) (+ rate x 1 ns of
slack). At t0 the bucket holds at most ``burst`` tokens, it gains ``rate`` per second, every
grant spends one, and ``pause_until`` and ``follow`` only ever remove credit.
(``tests/unit/test_ratelimit.py`` checks it; ``tests/bench`` measures it under asyncio.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from automationd.units import Rate

__all__ = ["TokenBucket", "default_burst", "read_ratelimit_headers"]


# A full bucket is re-anchored only when it overflows by more than this, so a caller that
# takes exactly when told (``now = now + wait`` with its rounding) never shifts the anchor.
_SLACK = 1e-9


def default_burst(rate: Rate) -> int:
    """Bucket size when the config gives none: one second's worth, at least one token."""
    return max(1, math.ceil(rate.per_second))


class TokenBucket:
    """Grants at most ``burst`` at once and ``rate`` on average; honours partner pauses."""

    __slots__ = ("_anchor", "_burst", "_count", "_fill", "_interval", "_n", "_paused", "_period")

    def __init__(self, rate: Rate, burst: int, now: float, *, tokens: float | None = None) -> None:
        """Start full, or with ``tokens`` (clamped to [0, burst]) when carrying state over."""
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self._count = rate.count
        self._period = rate.period
        self._interval = rate.period / rate.count
        self._burst = burst
        self._fill = burst * self._interval  # how long an empty bucket takes to fill
        start = float(burst) if tokens is None else min(float(burst), max(0.0, tokens))
        self._anchor = now - start * self._interval
        self._n = 0
        self._paused = -math.inf

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def paused_until(self) -> float:
        """Monotonic time before which nothing is granted (``-inf`` when never paused)."""
        return self._paused

    def _empty_at(self, n: int) -> float:
        return self._anchor + n * self._period / self._count

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (fractional; a pause does not hide them)."""
        t = (now - self._empty_at(self._n)) / self._interval
        return min(float(self._burst), max(0.0, t))

    def take(self, now: float) -> float:
        """0.0 and one token spent if one is there (and no pause); else seconds to wait."""
        # Hot path: the _empty_at() arithmetic is inlined (about a third cheaper).
        anchor, n, period, count = self._anchor, self._n, self._period, self._count
        if anchor + n * period / count < now - self._fill - _SLACK:  # full: surplus is lost
            anchor = self._anchor = now - self._fill
            n = self._n = 0
        ready = anchor + (n + 1) * period / count
        if now < self._paused:
            return max(self._paused, ready) - now
        if now >= ready:
            self._n = n + 1
            return 0.0
        return ready - now

    def pause_until(self, t: float) -> None:
        """Grant nothing before ``t`` (a 429 pauses the whole service); pauses only extend."""
        if t > self._paused:
            self._paused = t

    def follow(self, remaining: int, reset_in: float, now: float) -> None:
        """Adopt the partner's view: at most ``remaining`` tokens; none until reset at zero.

        Never raises our tokens: a partner that says 500 remaining does not let us exceed our
        own configured rate.
        """
        remaining = max(0, remaining)
        if remaining < self.tokens(now):
            self._anchor = now - remaining * self._interval
            self._n = 0
        if remaining == 0 and reset_in > 0:
            self.pause_until(now + reset_in)


_REMAINING = frozenset({"ratelimit-remaining", "x-ratelimit-remaining"})
_RESET = frozenset({"ratelimit-reset", "x-ratelimit-reset"})
EPOCH_THRESHOLD = 1e9  # a reset value this large is epoch seconds (GitHub style), not a delta


def _header_number(value: str) -> float | None:
    """First number in a header value (``"10"``, ``"10, 10;w=1"``); None when unreadable."""
    head = value.split(",", 1)[0].split(";", 1)[0].strip()
    try:
        number = float(head)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_ratelimit_headers(
    headers: Mapping[str, str], wall_now: float, max_reset: float
) -> tuple[int, float] | None:
    """``(remaining, reset_in)`` from RateLimit-* or X-RateLimit-* headers, None without them.

    Names match case-insensitively. The reset is delta seconds, or epoch seconds when it is
    at least ``EPOCH_THRESHOLD``; it is clamped to [0, ``max_reset``] (0 when absent).
    """
    remaining: float | None = None
    reset: float | None = None
    for key, value in headers.items():
        lowered = key.lower()
        if lowered in _REMAINING:
            remaining = _header_number(value)
        elif lowered in _RESET:
            reset = _header_number(value)
    if remaining is None:
        return None
    reset_in = 0.0
    if reset is not None:
        reset_in = reset - wall_now if reset >= EPOCH_THRESHOLD else reset
        reset_in = min(max(0.0, reset_in), max_reset)
    return max(0, int(remaining)), reset_in
