"""Retry budget: the floor, the ratio above it, and the bucketed sliding window (pure)."""

from __future__ import annotations

import pytest

from automationd.core.budget import RetryBudget
from automationd.units import Rate

ONE_PER_S = Rate(1, 1.0)  # floor: 10 retries per 10 s window


def fill(budget: RetryBudget, now: float, calls: int, retries: int) -> None:
    for i in range(calls):
        budget.record_call(now, is_retry=i < retries)


@pytest.mark.parametrize(
    ("calls", "retries", "allowed"),
    [
        (0, 0, True),  # nothing yet
        (9, 9, True),  # only retries, but under the floor of 10
        (10, 10, False),  # floor reached and 100 % retries
        (100, 19, True),  # 20 <= 0.2 x 101
        (100, 20, False),  # 21 >  0.2 x 101
        (200, 30, True),  # well within the ratio
    ],
)
def test_floor_then_ratio(calls: int, retries: int, allowed: bool) -> None:
    """Under the floor retries always go; above it at most `ratio` of calls may be retries."""
    budget = RetryBudget(0.2, ONE_PER_S)
    fill(budget, 5.5, calls, retries)
    assert (budget.retry_wait(5.5) == 0.0) is allowed


def test_window_slides_in_bucket_steps() -> None:
    """An exhausted budget comes back when its calls age out of the 10 s window."""
    budget = RetryBudget(0.0, ONE_PER_S)
    fill(budget, 0.2, 10, 10)  # bucket [0, 1)
    assert budget.retry_wait(0.5) == pytest.approx(9.5)  # bucket leaves the window at t=10
    assert budget.retry_wait(9.9) == pytest.approx(0.1)
    assert budget.retry_wait(10.0) == 0.0
    assert (budget.calls, budget.retries) == (0, 0)


def test_wait_is_until_enough_old_buckets_expire() -> None:
    """retry_wait() names the first instant at which expiring buckets make room."""
    budget = RetryBudget(0.0, ONE_PER_S)
    fill(budget, 1.0, 4, 4)  # bucket 1 expires at 11
    fill(budget, 3.0, 6, 6)  # bucket 3 expires at 13
    fill(budget, 6.0, 1, 1)  # bucket 6 expires at 16
    # 11 retries > floor 10; dropping bucket 1 leaves 7 < 10.
    assert budget.retry_wait(7.0) == pytest.approx(4.0)


def test_first_attempts_buy_room_for_retries() -> None:
    """Above the floor, more first attempts let more retries through (ratio of all calls)."""
    budget = RetryBudget(0.5, ONE_PER_S)
    fill(budget, 0.0, 20, 20)
    assert budget.retry_wait(0.0) > 0
    fill(budget, 0.0, 20, 0)  # 20 retries of 40 calls: 21 > 0.5 x 41
    assert budget.retry_wait(0.0) > 0
    fill(budget, 0.0, 1, 0)  # 20 retries of 41 calls: 21 <= 0.5 x 42
    assert budget.retry_wait(0.0) == 0.0


def test_long_idle_gap_clears_everything() -> None:
    """A jump far past the window clears all buckets at bounded cost."""
    budget = RetryBudget(0.1, ONE_PER_S)
    fill(budget, 0.0, 50, 50)
    assert budget.retry_wait(1e9) == 0.0
    assert (budget.calls, budget.retries) == (0, 0)


def test_counters_stay_bounded_under_load() -> None:
    """A hundred thousand calls leave only window/bucket counters and exact running totals."""
    budget = RetryBudget(0.2, ONE_PER_S, window=10.0)
    for i in range(100_000):
        budget.record_call(i * 0.001, is_retry=i % 10 == 0)  # 1000 calls/s, 10 % retries
    assert budget.calls == 10_000  # the last 10 one-second buckets
    assert budget.retries == 1_000
    assert budget.retry_wait(99.9999) == 0.0


@pytest.mark.parametrize(("window", "bucket"), [(0.0, 1.0), (10.0, 0.0)])
def test_window_and_bucket_must_be_positive(window: float, bucket: float) -> None:
    """A zero-length window cannot hold any counts."""
    with pytest.raises(ValueError):
        RetryBudget(0.2, ONE_PER_S, window, bucket=bucket)
