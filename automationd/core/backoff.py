"""Retry delays: exponential backoff with jitter, and Retry-After parsing.

Pure: callers pass ``now`` (epoch seconds) and a ``random.Random``, so tests are exact.

    backoff_delay(n) = min(max, base * multiplier ** (n - 1)) * (1 +/- jitter)

``n`` counts retries, 1 for the first. The cap is applied before jitter so a capped series
still spreads out instead of synchronising every client at exactly ``max``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import re

from automationd.config.model import Backoff
from automationd.errors import ErrorKind

_DELTA_SECONDS = re.compile(r"-?\d+(?:\.\d+)?")


def backoff_delay(retry_number: int, policy: Backoff, rng: random.Random) -> float:
    """Seconds to wait before retry ``retry_number`` (1-based); never negative."""
    n = max(1, retry_number)
    try:
        raw = policy.base * policy.multiplier ** (n - 1)
    except OverflowError:
        raw = math.inf
    delay = min(policy.max, raw)
    if policy.jitter > 0:
        delay *= 1.0 + rng.uniform(-policy.jitter, policy.jitter)
    return max(0.0, delay)


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date).

    A date in the past (or a negative number) means "now" (0); anything unreadable is None,
    so the caller falls back to its backoff policy.
    """
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return max(0.0, float(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" zone: RFC 5322 says UTC with unknown origin
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)


def retry_delay(
    kind: ErrorKind,
    retry_number: int,
    policy: Backoff,
    rate_limited_policy: Backoff,
    retry_after: float | None,
    max_retry_after: float,
    rng: random.Random,
) -> float:
    """The wait before the next attempt, choosing the rule by error kind.

    rate_limited with a Retry-After waits exactly that long (capped by the service's
    ``max_retry_after``); rate_limited without one uses the service's slower policy.
    breaker_open with a ``retry_after`` (seconds until the half-open probe) waits at least
    until then: a refused attempt counts as a try, and retrying before the breaker can let
    anyone through would spend every retry without ever reaching the service. The job's
    backoff stays a floor, so refusals while a probe is out still back off as usual.
    Every other kind uses the job's backoff.
    """
    if kind is ErrorKind.RATE_LIMITED:
        if retry_after is not None:
            return max(0.0, min(retry_after, max_retry_after))
        return backoff_delay(retry_number, rate_limited_policy, rng)
    delay = backoff_delay(retry_number, policy, rng)
    if kind is ErrorKind.BREAKER_OPEN and retry_after is not None:
        return max(delay, min(retry_after, max_retry_after))
    return delay
