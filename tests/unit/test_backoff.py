"""Retry delays: exponential backoff with jitter, Retry-After parsing, and the kind switch."""

from __future__ import annotations

import email.utils
import random

import pytest

from automationd.config.model import Backoff
from automationd.core.backoff import backoff_delay, parse_retry_after, retry_delay
from automationd.errors import ErrorKind

NO_JITTER = Backoff(base=2.0, max=64.0, multiplier=2.0, jitter=0.0)
NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0), (7, 64.0), (50, 64.0), (5000, 64.0)],
)
def test_backoff_without_jitter(n: int, expected: float) -> None:
    """Without jitter the delay is base * multiplier^(n-1), capped at max (huge n too)."""
    assert backoff_delay(n, NO_JITTER, random.Random(1)) == expected


def test_backoff_jitter_stays_in_band() -> None:
    """With jitter 0.2 every delay lies within ±20 % of the capped exponential value."""
    policy = Backoff(base=1.0, max=10.0, multiplier=3.0, jitter=0.2)
    rng = random.Random(7)
    for n, raw in [(1, 1.0), (2, 3.0), (3, 9.0), (4, 10.0), (9, 10.0)]:
        delays = [backoff_delay(n, policy, rng) for _ in range(200)]
        assert all(raw * 0.8 <= d <= raw * 1.2 for d in delays)
        assert max(delays) - min(delays) > raw * 0.2  # it actually spreads


def test_backoff_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same series, so tests and replays are exact."""
    policy = Backoff(base=2.0, max=64.0, multiplier=2.0, jitter=0.5)
    a = [backoff_delay(n, policy, random.Random(3)) for n in range(1, 8)]
    b = [backoff_delay(n, policy, random.Random(3)) for n in range(1, 8)]
    assert a == b


def test_backoff_never_negative() -> None:
    """A jitter of 1 or more can never produce a negative delay."""
    policy = Backoff(base=1.0, max=5.0, multiplier=2.0, jitter=1.5)
    rng = random.Random(0)
    assert all(backoff_delay(n, policy, rng) >= 0.0 for n in range(1, 6) for _ in range(100))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0),
        ("", None),
        ("soon", None),
        ("2 seconds", None),
        ("Mon, 99 Foo 2015 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    """Delta-seconds and HTTP-dates become seconds from now; past is 0; garbage is None."""
    assert parse_retry_after(value, NOW) == expected


RATE = Backoff(base=16.0, max=64.0, multiplier=2.0, jitter=0.0)


@pytest.mark.parametrize(
    ("kind", "n", "retry_after", "expected"),
    [
        (ErrorKind.RATE_LIMITED, 1, 2.0, 2.0),
        (ErrorKind.RATE_LIMITED, 1, 7200.0, 3600.0),  # capped by max_retry_after
        (ErrorKind.RATE_LIMITED, 1, None, 16.0),  # no header: the service's slow policy
        (ErrorKind.RATE_LIMITED, 3, None, 64.0),
        (ErrorKind.RETRYABLE, 1, None, 2.0),
        (ErrorKind.RETRYABLE, 3, 99.0, 8.0),  # retry_after only matters when rate limited
        (ErrorKind.TIMEOUT, 2, None, 4.0),
        (ErrorKind.INTERRUPTED, 1, None, 2.0),
        (ErrorKind.BREAKER_OPEN, 1, None, 2.0),  # no probe time known: the job's backoff
        (ErrorKind.BREAKER_OPEN, 1, 45.0, 45.0),  # wait for the half-open probe
        (ErrorKind.BREAKER_OPEN, 4, 3.0, 16.0),  # the job's backoff is a floor
        (ErrorKind.BREAKER_OPEN, 1, 7200.0, 3600.0),  # capped by max_retry_after
    ],
)
def test_retry_delay_chooses_rule_by_kind(
    kind: ErrorKind, n: int, retry_after: float | None, expected: float
) -> None:
    """Rate limits honour Retry-After (capped) or the slow policy; an open breaker waits for
    its probe (job backoff as a floor); other kinds use the job's backoff."""
    delay = retry_delay(kind, n, NO_JITTER, RATE, retry_after, 3600.0, random.Random(0))
    assert delay == expected
