"""Circuit breaker for one partner service, written as a table (h11 style). Pure.

Rules:
- ``closed``: everything passes. Each service failure adds one to a run of consecutive failures;
  a success clears it. The failure that makes the run reach ``failures`` is a ``trip``: → open.
- ``open``: everything is refused until ``reset`` seconds have passed since it opened; then the
  next ``allow`` finds it ``half_open`` (the ``reset_elapsed`` event).
- ``half_open``: exactly one probe is let through; everyone else is refused while it is out.
  The probe's success closes the breaker, its failure opens it again (and restarts ``reset``).
  A probe whose caller vanished (cancelled, never reported) is given back with
  ``abandon_probe``; as a last resort a probe that has been out for ``reset`` seconds is
  presumed lost and another is allowed, so a lost report can never wedge the service shut.
- Late answers from attempts that started before the trip do not close an open breaker.
- What counts as a failure is the caller's call: retryable errors, timeouts and 429s do; a
  fatal 4xx means the service answered, so it is not one.
Time is monotonic seconds supplied by the caller; ``opened_at`` is the wall time the caller
passed for display only.
"""

from __future__ import annotations

import enum
import math

from automationd.core.runstate import InvalidTransition

__all__ = [
    "GAUGE",
    "TRANSITIONS",
    "Breaker",
    "BreakerEvent",
    "BreakerState",
    "InvalidTransition",
    "next_breaker_state",
]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class BreakerEvent(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    TRIP = "trip"  # the failure that reaches the threshold
    RESET_ELAPSED = "reset_elapsed"


_C, _H, _O = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
_S, _F, _T, _R = (
    BreakerEvent.SUCCESS,
    BreakerEvent.FAILURE,
    BreakerEvent.TRIP,
    BreakerEvent.RESET_ELAPSED,
)

TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (_C, _S): _C,
    (_C, _F): _C,
    (_C, _T): _O,
    (_O, _S): _O,  # a late answer from before the trip
    (_O, _F): _O,
    (_O, _R): _H,
    (_H, _S): _C,
    (_H, _F): _O,
}

GAUGE: dict[BreakerState, int] = {_C: 0, _H: 1, _O: 2}  # automationd_breaker_state


def next_breaker_state(state: BreakerState, event: BreakerEvent) -> BreakerState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


class Breaker:
    """Consecutive-failure breaker with a single half-open probe."""

    __slots__ = (
        "_opened_mono",
        "_probe_since",
        "failures",
        "opened_at",
        "reset",
        "state",
        "threshold",
    )

    def __init__(self, failures: int, reset: float) -> None:
        if failures < 1:
            raise ValueError(f"failures must be at least 1, not {failures}")
        self.threshold = failures
        self.reset = reset
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive service failures
        self.opened_at: float | None = None  # wall time of the last opening, for display
        self._opened_mono = -math.inf
        self._probe_since: float | None = None  # monotonic time the probe went out

    @property
    def gauge_value(self) -> int:
        return GAUGE[self.state]

    @property
    def probe_out(self) -> bool:
        return self._probe_since is not None

    def retune(self, failures: int, reset: float) -> None:
        """Adopt new limits on reload without forgetting the live state."""
        if failures < 1:
            raise ValueError(f"failures must be at least 1, not {failures}")
        self.threshold = failures
        self.reset = reset

    def reopens_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe try (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_mono + self.reset - now)

    def tick(self, now: float) -> BreakerState:
        """Apply the passage of time (open → half-open once ``reset`` has elapsed)."""
        if self.state is BreakerState.OPEN and now >= self._opened_mono + self.reset:
            self._step(BreakerEvent.RESET_ELAPSED)
            self._probe_since = None
        return self.state

    def allow(self, now: float) -> bool:
        """May an attempt go now? In half-open this hands out the one probe."""
        state = self.tick(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if self._probe_since is not None and now - self._probe_since < self.reset:
            return False
        self._probe_since = now
        return True

    def abandon_probe(self) -> None:
        """The probe's caller went away without an answer: let the next caller probe."""
        if self.state is BreakerState.HALF_OPEN:
            self._probe_since = None

    def record_success(self, now: float) -> BreakerState:
        self.tick(now)
        self._step(BreakerEvent.SUCCESS)
        if self.state is BreakerState.CLOSED:
            self.failures = 0
            self.opened_at = None
            self._probe_since = None
        return self.state

    def record_failure(self, now: float, *, wall: float | None = None) -> BreakerState:
        """Count a service failure; ``wall`` (epoch seconds) is kept as ``opened_at``."""
        before = self.tick(now)
        self.failures += 1
        trip = before is BreakerState.CLOSED and self.failures >= self.threshold
        self._step(BreakerEvent.TRIP if trip else BreakerEvent.FAILURE)
        if self.state is BreakerState.OPEN and before is not BreakerState.OPEN:
            self._opened_mono = now
            self.opened_at = now if wall is None else wall
            self._probe_since = None
        return self.state

    def _step(self, event: BreakerEvent) -> None:
        self.state = next_breaker_state(self.state, event)
