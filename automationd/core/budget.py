"""Retry budget for one partner service: stops retry storms from multiplying an outage. Pure.

Rules:
- Every call that goes to the service is recorded (``is_retry`` says whether it is a retry).
- A retry may go while the retries in the sliding window stay under the floor
  (``floor`` x ``window``, e.g. 10/s x 10 s = 100): a quiet service may always retry.
- Above the floor, at most ``ratio`` of the calls in the window may be retries, counting the
  one being asked about: ``retries + 1 ≤ ratio x (calls + 1)``.
- The window is a ring of fixed buckets (1 s by default) with running totals, so recording and
  asking are O(1) in the call rate: memory is ``window / bucket`` pairs of counters, not a list
  of timestamps. The window therefore slides in bucket steps: it spans between
  ``window - bucket`` and ``window`` seconds.
Time is monotonic seconds supplied by the caller.
"""

from __future__ import annotations

import math

from automationd.units import Rate

__all__ = ["RetryBudget"]


class RetryBudget:
    __slots__ = (
        "_calls",
        "_floor",
        "_head",
        "_n",
        "_ratio",
        "_retries",
        "_total_calls",
        "_total_retries",
        "_width",
    )

    def __init__(
        self, ratio: float, floor: Rate, window: float = 10.0, *, bucket: float = 1.0
    ) -> None:
        if window <= 0 or bucket <= 0:
            raise ValueError("window and bucket must be positive")
        self._ratio = ratio
        self._n = max(1, math.ceil(window / bucket))
        self._width = window / self._n
        self._floor = floor.per_second * window  # retries always allowed in one window
        self._calls = [0] * self._n
        self._retries = [0] * self._n
        self._total_calls = 0
        self._total_retries = 0
        self._head: int | None = None  # absolute index of the newest bucket

    @property
    def calls(self) -> int:
        return self._total_calls

    @property
    def retries(self) -> int:
        return self._total_retries

    def _advance(self, now: float) -> int:
        idx = math.floor(now / self._width)
        head = self._head
        if head is None:
            self._head = idx
        elif idx > head:
            for k in range(head + 1, head + 1 + min(idx - head, self._n)):
                slot = k % self._n
                self._total_calls -= self._calls[slot]
                self._total_retries -= self._retries[slot]
                self._calls[slot] = 0
                self._retries[slot] = 0
            self._head = idx
        return self._head if self._head is not None else idx

    def _allowed(self, calls: int, retries: int) -> bool:
        return retries < self._floor or retries + 1 <= self._ratio * (calls + 1)

    def record_call(self, now: float, is_retry: bool) -> None:
        slot = self._advance(now) % self._n
        self._calls[slot] += 1
        self._total_calls += 1
        if is_retry:
            self._retries[slot] += 1
            self._total_retries += 1

    def retry_wait(self, now: float) -> float:
        """0.0 when a retry may go now; else seconds until old buckets age out enough."""
        head = self._advance(now)
        calls, retries = self._total_calls, self._total_retries
        if self._allowed(calls, retries):
            return 0.0
        oldest = head - self._n + 1
        for k in range(self._n):  # age buckets out, oldest first, until the retry fits
            slot = (oldest + k) % self._n
            calls -= self._calls[slot]
            retries -= self._retries[slot]
            if self._allowed(calls, retries):
                return max(0.0, (oldest + k + self._n) * self._width - now)
        return max(0.0, (head + self._n) * self._width - now)  # ratio and floor both zero
