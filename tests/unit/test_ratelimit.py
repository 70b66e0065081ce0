"""Token bucket refill math, pauses, partner headers and the over-grant invariant (pure)."""

from __future__ import annotations

import random

import pytest

from automationd.core.ratelimit import (
    EPOCH_THRESHOLD,
    TokenBucket,
    default_burst,
    read_ratelimit_headers,
)
from automationd.units import Rate, parse_rate


def max_overgrant(times: list[float], rate: float, burst: int) -> float:
    """max over windows [t_i, t_j] of grants - (burst + rate x (t_j - t_i)), in O(n)."""
    worst = -float("inf")
    best_start = -float("inf")  # max over i <= j of (rate t_i - i)
    for j, t in enumerate(times):
        best_start = max(best_start, rate * t - j)
        worst = max(worst, (j + 1 - rate * t) + best_start - burst)
    return worst


@pytest.mark.parametrize(
    ("rate", "burst", "steps"),
    [
        # (now, expected take() result): a full bucket of 2 at 1/s, then waits
        ("1/s", 2, [(0.0, 0.0), (0.0, 0.0), (0.0, 1.0), (0.5, 0.5), (1.0, 0.0), (1.0, 1.0)]),
        # 4/s, burst 1: one at once, then one per 0.25 s
        ("4/s", 1, [(0.0, 0.0), (0.1, 0.15), (0.25, 0.0), (0.3, 0.2), (0.5, 0.0)]),
        # a long idle period banks at most `burst` tokens
        ("10/s", 3, [(0.0, 0.0), (100.0, 0.0), (100.0, 0.0), (100.0, 0.0), (100.0, 0.1)]),
        # slow rates: 200/1h is one token every 18 s
        ("200/1h", 1, [(0.0, 0.0), (0.0, 18.0), (9.0, 9.0), (18.0, 0.0)]),
    ],
)
def test_take_sequences(rate: str, burst: int, steps: list[tuple[float, float]]) -> None:
    """take() grants (0.0) while a whole token is there and otherwise returns the exact wait."""
    bucket = TokenBucket(parse_rate(rate), burst, 0.0)
    for now, expected in steps:
        assert bucket.take(now) == pytest.approx(expected, abs=1e-9), (now, expected)


def test_refused_take_consumes_nothing() -> None:
    """A take() that returns a wait leaves the tokens as they were."""
    bucket = TokenBucket(Rate(2, 1.0), 1, 0.0)
    assert bucket.take(0.0) == 0.0
    before = bucket.tokens(0.2)
    assert bucket.take(0.2) == pytest.approx(0.3)
    assert bucket.tokens(0.2) == pytest.approx(before)


@pytest.mark.parametrize(
    ("now", "tokens"), [(0.0, 0.0), (0.125, 0.5), (0.25, 1.0), (0.6, 2.4), (5.0, 3.0)]
)
def test_tokens_refill_fractionally_up_to_burst(now: float, tokens: float) -> None:
    """tokens() grows by rate x elapsed, fractionally, and is capped at burst."""
    bucket = TokenBucket(Rate(4, 1.0), 3, 0.0, tokens=0.0)
    assert bucket.tokens(now) == pytest.approx(tokens)


@pytest.mark.parametrize(("given", "held"), [(None, 5.0), (2.5, 2.5), (9.0, 5.0), (-1.0, 0.0)])
def test_initial_tokens_are_clamped(given: float | None, held: float) -> None:
    """A bucket starts full, or with the carried-over tokens clamped to [0, burst]."""
    assert TokenBucket(Rate(1, 1.0), 5, 10.0, tokens=given).tokens(10.0) == held


def test_burst_must_be_positive() -> None:
    """A bucket that could never grant is a config bug, refused at construction."""
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(Rate(1, 1.0), 0, 0.0)


@pytest.mark.parametrize(("rate", "burst"), [("200/1h", 1), ("10/s", 10), ("5/250ms", 20)])
def test_default_burst_is_one_second_of_rate(rate: str, burst: int) -> None:
    """Without a configured burst the bucket holds one second's worth, at least one."""
    assert default_burst(parse_rate(rate)) == burst


def test_no_drift_over_many_grants() -> None:
    """Taking exactly when told, the n-th grant lands at n x interval with no accumulated error."""
    bucket = TokenBucket(Rate(3, 1.0), 1, 0.0, tokens=0.0)
    now = 0.0
    n = 200_000
    for _ in range(n):
        while (wait := bucket.take(now)) > 0:
            now += wait
    assert abs(now - n / 3) < 1e-9
    assert abs(bucket.take(now) - 1 / 3) < 1e-9


@pytest.mark.parametrize(("rate", "burst", "seed"), [("50/s", 5, 1), ("7/2s", 3, 2), ("4/s", 1, 3)])
def test_grants_never_exceed_burst_plus_rate_times_window(rate: str, burst: int, seed: int) -> None:
    """Under random polling, grants in any window stay within burst + rate x window."""
    parsed = parse_rate(rate)
    rng = random.Random(seed)
    bucket = TokenBucket(parsed, burst, 0.0)
    now, grants = 0.0, []
    for _ in range(20_000):
        now += rng.expovariate(parsed.per_second * 3)
        if rng.random() < 0.01:
            now += rng.uniform(0, 5)  # idle spells refill the bucket
        if bucket.take(now) == 0.0:
            grants.append(now)
    assert len(grants) > 1000
    assert max_overgrant(grants, parsed.per_second, burst) <= 1e-9


def test_pause_blocks_grants_until_its_end() -> None:
    """Nothing is granted before pause_until(t), even with a full bucket; pauses only extend."""
    bucket = TokenBucket(Rate(10, 1.0), 5, 0.0)
    bucket.pause_until(2.0)
    bucket.pause_until(1.0)  # a shorter pause does not shorten it
    assert bucket.paused_until == 2.0
    assert bucket.take(0.5) == pytest.approx(1.5)
    assert bucket.tokens(0.5) == 5.0
    assert bucket.take(2.0) == 0.0


def test_pause_wait_covers_an_empty_bucket_too() -> None:
    """When the pause ends before the next token, take() waits for the token."""
    bucket = TokenBucket(Rate(1, 10.0), 1, 0.0)
    assert bucket.take(0.0) == 0.0
    bucket.pause_until(2.0)
    assert bucket.take(1.0) == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("remaining", "reset_in", "tokens_after", "paused_until"),
    [
        (2, 30.0, 2.0, float("-inf")),  # lowered to what the partner says
        (50, 30.0, 5.0, float("-inf")),  # never raised above our own tokens
        (0, 30.0, 0.0, 130.0),  # none left: pause until the partner's reset
        (0, 0.0, 0.0, float("-inf")),  # none left, no reset given: our rate decides
        (-3, 0.0, 0.0, float("-inf")),  # nonsense is read as zero
    ],
)
def test_follow_partner_headers(
    remaining: int, reset_in: float, tokens_after: float, paused_until: float
) -> None:
    """follow() lowers tokens to the partner's remaining, pauses at zero, never raises them."""
    bucket = TokenBucket(Rate(1, 1.0), 5, 100.0)
    bucket.follow(remaining, reset_in, 100.0)
    assert bucket.tokens(100.0) == tokens_after
    assert bucket.paused_until == paused_until


def test_follow_then_refill_continues_at_our_rate() -> None:
    """After follow() lowers the bucket, it refills from there at the configured rate."""
    bucket = TokenBucket(Rate(2, 1.0), 4, 0.0)
    bucket.follow(1, 0.0, 0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.tokens(1.0) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Content-Type": "text/plain"}, None),
        ({"RateLimit-Remaining": "7", "RateLimit-Reset": "30"}, (7, 30.0)),
        ({"x-ratelimit-remaining": "0", "X-RateLimit-Reset": "1700000060"}, (0, 60.0)),
        ({"X-RATELIMIT-REMAINING": "3"}, (3, 0.0)),
        ({"RateLimit-Remaining": "4, 9;w=60", "RateLimit-Reset": "12"}, (4, 12.0)),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "99999"}, (0, 3600.0)),  # capped
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "1699999000"}, (0, 0.0)),  # past
        ({"RateLimit-Remaining": "lots"}, None),
        ({"RateLimit-Remaining": "2", "RateLimit-Reset": "soon"}, (2, 0.0)),
    ],
)
def test_read_ratelimit_headers(
    headers: dict[str, str], expected: tuple[int, float] | None
) -> None:
    """Both header families are read case-insensitively; large resets are epoch seconds."""
    assert EPOCH_THRESHOLD <= 1_700_000_000
    assert read_ratelimit_headers(headers, 1_700_000_000.0, 3600.0) == expected
