"""A service gate for a fleet: the bucket, the 429 pause and the breaker are the fleet's.

Everything local stays as in ``ServiceGate`` (engine/gate.py): the FIFO line with only its
head awake, the retry budget, the concurrency cap (per daemon), the 429 pause arithmetic.
What changes is the head's question: instead of the local bucket and breaker it asks the
database (store/pg/limits.py ``admit``: one row per service, locked for one statement), so
every daemon takes from the same bucket and sees the same pause and breaker:

- granted: the head goes, holding a token nobody else in the fleet holds;
- a wait: a pause or no token; the head sleeps that long and asks again (no polling in
  between, and only the head asks: one round trip per grant, per daemon);
- a refusal: the breaker is open (or its one half-open probe is out elsewhere); the attempt
  is refused at once with ``breaker_open``, as on one host.

Outcomes, pauses (a 429, ``RateLimit-Remaining: 0``) and the partner's remaining count are
reported with the next store batch (never awaited by the attempt). A store that fails while
the head asks makes it wait for the store and ask again: an attempt never starts unadmitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automationd.clock import Clock
from automationd.config.model import ServiceConfig
from automationd.core.ratelimit import default_burst, read_ratelimit_headers
from automationd.engine.gate import SERVICE_FAILURES, ServiceGate, Ticket
from automationd.errors import ActionError, ErrorKind, StoreError
from automationd.obs.metrics import Metrics
from automationd.store.pg.limits import CLOSED, Admission, SharedLimits
from automationd.units import rfc3339

STORE_RETRY = 0.5  # seconds between asks while the store fails


class FleetGate(ServiceGate):
    def __init__(
        self,
        config: ServiceConfig,
        clock: Clock,
        metrics: Metrics,
        *,
        name: str | None = None,
        limits: SharedLimits,
    ) -> None:
        self._limits = limits
        self._seen: Admission = CLOSED
        super().__init__(config, clock, metrics, name=name)

    def _shape(self) -> tuple[float, int, int, float]:
        """(interval, burst, breaker failures, breaker reset) of the current config."""
        cfg = self.config
        interval, burst = 0.0, 1
        if cfg.rate is not None:
            interval = cfg.rate.period / cfg.rate.count
            burst = cfg.burst or default_burst(cfg.rate)
        failures, reset = 0, 0.0
        if cfg.breaker is not None:
            failures, reset = cfg.breaker.failures, cfg.breaker.reset
        return interval, burst, failures, reset

    # -- admission ------------------------------------------------------------------------
    def _check_breaker(self, ticket: Ticket, now: float) -> None:
        """The fleet's breaker answers in ``admit``, at the head of the line."""

    async def _admit(self, ticket: Ticket, now: float) -> float | None:
        """The database answers instead of the local bucket and breaker (module docstring);
        the waits count from its answer."""
        clock = self.clock
        try:
            seen = self._seen = await self._limits.admit(self.name, *self._shape())
        except StoreError:
            return clock.monotonic() + STORE_RETRY
        if seen.tokens is not None:
            self.show_tokens(seen.tokens)
        if seen.reopen_in > 0:
            raise ActionError(
                f"service {self.name!r}: circuit breaker open",
                kind=ErrorKind.BREAKER_OPEN,
                retry_after=seen.reopen_in,
            )
        if seen.granted:
            ticket.probe = seen.probe
            return None
        return clock.monotonic() + seen.wait

    def _abandon_probe(self) -> None:
        self._limits.report(self.name, probe=True, failures=self._shape()[2])

    # -- outcomes -------------------------------------------------------------------------
    def report(self, *, ok: bool, kind: ErrorKind | None, retry_after: float | None) -> None:
        super().report(ok=ok, kind=kind, retry_after=retry_after)  # the 429 pause → _pause
        if self.config.breaker is not None:
            self._limits.report(
                self.name,
                ok=ok or kind is ErrorKind.FATAL,
                failure=not ok and kind in SERVICE_FAILURES,
                failures=self.config.breaker.failures,
            )

    def _pause(self, now: float, delay: float, *, reason: str) -> bool:
        longer = super()._pause(now, delay, reason=reason)
        if longer:
            self._limits.report(self.name, pause=delay)
        return longer

    def observe_http(self, status: int, headers: Mapping[str, str]) -> None:
        super().observe_http(status, headers)
        seen = read_ratelimit_headers(headers, self.clock.time(), self.config.max_retry_after)
        interval = self._shape()[0]
        if seen is not None and interval > 0:
            self._limits.report(self.name, interval=interval, remaining=seen[0])

    # -- views ----------------------------------------------------------------------------
    def limits(self) -> dict[str, Any]:
        row = super().limits()
        seen = self._seen
        row["tokens"] = None if seen.tokens is None else round(seen.tokens, 3)
        row["paused_until"] = (
            rfc3339(self.clock.time() + seen.paused_for) if seen.paused_for > 0 else None
        )
        row["scope"] = "fleet"
        return row

    def breaker_row(self) -> dict[str, Any] | None:
        if self.config.breaker is None:
            return None
        seen = self._seen
        return {
            "service": self.name,
            "state": seen.state,
            "failures": seen.failures,
            "opened_at": rfc3339(seen.opened_at),
            "scope": "fleet",
        }
