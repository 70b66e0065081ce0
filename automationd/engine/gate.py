"""The async gate of one ``[services.*]`` table: the only door from an attempt to a partner API.

Theory of operation (``slot()``):
1. Breaker: an open breaker refuses at once with ``ActionError(kind=BREAKER_OPEN)`` (its
   ``retry_after`` says when the half-open probe may go); in half-open exactly one caller
   gets the probe. Nobody ever waits on a breaker.
2. Retry budget (retries only): retries queue FIFO in their own ``WaitLine`` until the budget
   lets them go, so a storm of retries never blocks first attempts behind it. Every call is
   recorded when it joins the main line, which is what keeps a burst of retries from all
   passing the budget before any of them is counted.
3. Main line, FIFO: its head waits, in order, for a concurrency slot, the end of any pause
   (429 or ``RateLimit-Remaining: 0``) and a token, re-checking the breaker each time it wakes
   (a breaker that opened meanwhile refuses the waiters queued before it opened). Only the
   head is awake: one wake-up per token or freed slot, no thundering herd, no pump task.
4. The caller runs its attempt holding the slot; leaving the block frees it. A cancelled
   half-open probe gives the probe back.
A subclass (engine/fleetgate.py) overrides the hooks ``_admit``, ``_check_breaker``,
``_abandon_probe`` and ``_pause``, never this class's state: one wait loop for both.
Time comes only from the injected ``Clock``: monotonic for tokens and pauses, ``time()`` for the
RFC 3339 values shown by ``limits.list`` / ``breakers.list``. A rate change on reload applies
from the next grant; a head already asleep for a token keeps its (old) deadline.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.config.model import ServiceConfig
from automationd.core.breaker import Breaker, BreakerState
from automationd.core.budget import RetryBudget
from automationd.core.ratelimit import TokenBucket, default_burst, read_ratelimit_headers
from automationd.engine.waitline import WaitLine
from automationd.errors import ActionError, ErrorKind
from automationd.obs.metrics import Metrics
from automationd.units import rfc3339

__all__ = ["SERVICE_FAILURES", "ServiceGate", "Ticket"]  # the last two: engine/fleetgate.py

log: structlog.typing.FilteringBoundLogger = structlog.get_logger("automationd.services")

SERVICE_FAILURES = frozenset({ErrorKind.RETRYABLE, ErrorKind.TIMEOUT, ErrorKind.RATE_LIMITED})


class _NoGauge:
    """Stands in for a gauge child a service does not have (no bucket, no breaker)."""

    def set(self, value: float) -> None:
        pass


_NO_GAUGE: Any = _NoGauge()


@dataclass(slots=True)
class Ticket:
    """One slot() call while it waits: holds the half-open probe once granted."""

    probe: bool = False


class ServiceGate:
    """Token bucket + concurrency cap + 429 pause + breaker + retry budget for one service."""

    def __init__(
        self, config: ServiceConfig, clock: Clock, metrics: Metrics, *, name: str | None = None
    ) -> None:
        self.name = config.name if name is None else name  # the [services.NAME] key wins
        self.clock = clock
        self._metrics = metrics
        self._wait_hist = metrics.ratelimit_wait_seconds.labels(self.name)
        self._tokens_gauge = _NO_GAUGE  # a real child only while the service has a bucket
        self._breaker_gauge = _NO_GAUGE  # ... and while it has a breaker
        self._http_total = metrics.http_responses_total
        self._http_children: dict[int, Any] = {}
        self._main = WaitLine()
        self._retry_line = WaitLine()
        self._in_flight = 0
        self._waiting = 0
        self._paused = -math.inf
        self._pause_reason: str | None = None
        self._rl_streak = 0  # consecutive 429s without Retry-After, for the pause backoff
        self._slot_free: asyncio.Future[None] | None = None
        self._bucket: TokenBucket | None = None
        self._bucket_key: tuple[int, float, int] | None = None
        self._breaker: Breaker | None = None
        self._budget: RetryBudget | None = None
        self._budget_key: tuple[float, int, float] | None = None
        self.config = config
        self.reconfigure(config)

    # ------------------------------------------------------------------ config
    def reconfigure(self, config: ServiceConfig) -> None:
        """Adopt a reloaded config, keeping tokens (capped), pause, breaker and budget state."""
        now = self.clock.monotonic()
        self.config = config
        self._cap = config.concurrency
        rate = config.rate
        if rate is None:
            self._bucket = self._bucket_key = None
            self._tokens_gauge = self._drop_child(self._metrics.ratelimit_tokens)
        else:
            burst = config.burst or default_burst(rate)
            key = (rate.count, rate.period, burst)
            if key != self._bucket_key:
                old = self._bucket
                carry = None if old is None else old.tokens(now)
                self._bucket = TokenBucket(rate, burst, now, tokens=carry)
                self._bucket.pause_until(self._paused)
                self._bucket_key = key
            self._tokens_gauge = self._metrics.ratelimit_tokens.labels(self.name)
        if config.breaker is None:
            self._breaker = None
            self._breaker_gauge = self._drop_child(self._metrics.breaker_state)
        else:
            if self._breaker is None:
                self._breaker = Breaker(config.breaker.failures, config.breaker.reset)
            else:
                self._breaker.retune(config.breaker.failures, config.breaker.reset)
            self._breaker_gauge = self._metrics.breaker_state.labels(self.name)
            self._breaker_gauge.set(self._breaker.gauge_value)
        floor = config.retry_budget_floor
        budget_key = (config.retry_budget, floor.count, floor.period)
        if budget_key != self._budget_key:
            self._budget = RetryBudget(config.retry_budget, floor)
            self._budget_key = budget_key
        self._wake_head()  # a larger cap may free the head at once
        if self._bucket is not None:
            self._tokens_gauge.set(self._bucket.tokens(now))

    # -------------------------------------------------------------------- slot
    @asynccontextmanager
    async def slot(self, *, is_retry: bool) -> AsyncIterator[None]:
        """Wait FIFO for breaker, budget, pause, a concurrency slot and a token; then run."""
        ticket = await self._acquire(is_retry)
        try:
            yield
        except BaseException:
            # A probe that ended without an answer (cancelled, or the daemon drained before
            # the call) is given back; after a report the breaker left half-open: a no-op.
            if ticket.probe:
                self._abandon_probe()
            raise
        finally:
            self._in_flight -= 1
            self._wake_head()

    async def _acquire(self, is_retry: bool) -> Ticket:
        clock = self.clock
        start = clock.monotonic()
        ticket = Ticket()
        self._check_breaker(ticket, start)  # refuses at once, before any waiting
        self._waiting += 1
        try:
            if is_retry:
                await self._pass_budget()
            else:
                self._budget_record(start, False)
            await self._main.enter()
            try:
                await self._lead(ticket)
            finally:
                self._main.leave()
        except BaseException:
            if ticket.probe:
                self._abandon_probe()
            raise
        finally:
            self._waiting -= 1
        self._wait_hist.observe(clock.monotonic() - start)
        return ticket

    async def _pass_budget(self) -> None:
        await self._retry_line.enter()
        try:
            while True:
                now = self.clock.monotonic()
                budget = self._budget
                wait = 0.0 if budget is None else budget.retry_wait(now)
                if wait <= 0:
                    self._budget_record(now, True)
                    return
                await self.clock.sleep_until(now + wait)
        finally:
            self._retry_line.leave()

    def _budget_record(self, now: float, is_retry: bool) -> None:
        if self._budget is not None:
            self._budget.record_call(now, is_retry)

    async def _lead(self, ticket: Ticket) -> None:
        """At the head of the line: wait for a slot, then for ``_admit`` to let it go."""
        clock = self.clock
        while True:
            now = clock.monotonic()
            self._check_breaker(ticket, now)
            if self._cap is not None and self._in_flight >= self._cap:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._slot_free = fut
                try:
                    await fut
                finally:
                    self._slot_free = None
                continue
            until = await self._admit(ticket, now)
            if until is None:
                break
            await clock.sleep_until(until)
        self._in_flight += 1

    async def _admit(self, ticket: Ticket, now: float) -> float | None:
        """The head holds a slot: None lets it go now; else the monotonic time to ask again
        (here: the end of a pause, or the next token). Raising refuses it."""
        wait = self._paused - now
        bucket = self._bucket
        if wait <= 0 and bucket is not None:
            wait = bucket.take(now)
            if wait <= 0:
                self._tokens_gauge.set(bucket.tokens(now))
        return now + wait if wait > 0 else None

    def _wake_head(self) -> None:
        fut = self._slot_free
        if fut is not None and not fut.done():
            fut.set_result(None)

    # ----------------------------------------------------------------- breaker
    def _check_breaker(self, ticket: Ticket, now: float) -> None:
        breaker = self._breaker
        if breaker is None or ticket.probe:
            return
        before = breaker.state
        allowed = breaker.allow(now)
        self._breaker_moved(before)
        if allowed:
            ticket.probe = breaker.state is BreakerState.HALF_OPEN
            return
        raise ActionError(
            f"service {self.name!r}: circuit breaker open",
            kind=ErrorKind.BREAKER_OPEN,
            retry_after=breaker.reopens_in(now) or None,
        )

    def _abandon_probe(self) -> None:
        if self._breaker is not None:
            self._breaker.abandon_probe()

    def _breaker_moved(self, before: BreakerState) -> None:
        breaker = self._breaker
        if breaker is None or breaker.state is before:
            return
        self._breaker_gauge.set(breaker.gauge_value)
        if breaker.state is BreakerState.OPEN:
            log.warning(
                "breaker.opened",
                service=self.name,
                failures=breaker.failures,
                reset_s=breaker.reset,
                was=before.value,
            )
        else:
            log.info("breaker." + breaker.state.value, service=self.name, was=before.value)

    # ------------------------------------------------------------------ report
    def report(self, *, ok: bool, kind: ErrorKind | None, retry_after: float | None) -> None:
        """After an attempt: breaker bookkeeping, and a whole-service pause on a 429."""
        now = self.clock.monotonic()
        breaker = self._breaker
        if ok:
            self._rl_streak = 0
        if breaker is not None:
            before = breaker.state
            if ok or kind is ErrorKind.FATAL:  # the service answered
                breaker.record_success(now)
            elif kind in SERVICE_FAILURES:
                breaker.record_failure(now, wall=self.clock.time())
            self._breaker_moved(before)
        if not ok and kind is ErrorKind.RATE_LIMITED:
            cfg = self.config
            if retry_after is not None:
                delay = min(max(0.0, retry_after), cfg.max_retry_after)
            else:
                if now >= self._pause_end():  # 429s from requests sent before the pause
                    self._rl_streak += 1  # don't escalate it
                rl = cfg.rate_limited_backoff
                delay = min(rl.base * rl.multiplier ** max(0, self._rl_streak - 1), rl.max)
            self._pause(now, delay, reason="rate_limited")

    def observe_http(self, status: int, headers: Mapping[str, str]) -> None:
        """Count the response; follow (X-)RateLimit-Remaining / -Reset when the API sends them."""
        child = self._http_children.get(status)
        if child is None:
            child = self._http_children[status] = self._http_total.labels(self.name, str(status))
        child.inc()
        seen = read_ratelimit_headers(headers, self.clock.time(), self.config.max_retry_after)
        if seen is None:
            return
        left, reset_in = seen
        now = self.clock.monotonic()
        if left == 0 and reset_in > 0:  # before follow() so the pause is logged once
            self._pause(now, reset_in, reason="ratelimit_remaining")
        if self._bucket is not None:
            self._bucket.follow(left, reset_in, now)
            self._tokens_gauge.set(self._bucket.tokens(now))

    def _pause(self, now: float, delay: float, *, reason: str) -> bool:
        """Pause the whole service until ``now + delay``; True when that made it longer."""
        until = now + delay
        if delay <= 0 or until <= self._pause_end():
            return False
        self._paused = until
        self._pause_reason = reason  # shown with the pause (web console's limits page)
        if self._bucket is not None:
            self._bucket.pause_until(until)
        log.warning("service.paused", service=self.name, until_s=round(delay, 3), reason=reason)
        return True

    def _pause_end(self) -> float:
        bucket = self._bucket
        return self._paused if bucket is None else max(self._paused, bucket.paused_until)

    # ------------------------------------------------------------------- views
    def show_tokens(self, tokens: float) -> None:
        """Set the tokens gauge (the fleet's gate shows the shared bucket's count)."""
        self._tokens_gauge.set(tokens)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def breaker(self) -> Breaker | None:
        return self._breaker

    def limits(self) -> dict[str, Any]:
        """This service's ``limits.list`` row (SPEC §3), plus its concurrency cap."""
        now = self.clock.monotonic()
        bucket = self._bucket
        tokens = None
        if bucket is not None:
            tokens = round(bucket.tokens(now), 3)
            self._tokens_gauge.set(tokens)
        pause_end = self._pause_end()
        paused = rfc3339(self.clock.time() + pause_end - now) if pause_end > now else None
        return {
            "service": self.name,
            "rate": str(self.config.rate) if self.config.rate is not None else None,
            "burst": bucket.burst if bucket is not None else None,
            "tokens": tokens,
            "waiting": self._waiting,
            "paused_until": paused,
            "paused_reason": self._pause_reason if paused else None,
            "in_flight": self._in_flight,
            "concurrency": self._cap,
        }

    def breaker_row(self) -> dict[str, Any] | None:
        """This service's ``breakers.list`` row, or None without a breaker."""
        breaker = self._breaker
        if breaker is None:
            return None
        before = breaker.state
        breaker.tick(self.clock.monotonic())
        self._breaker_moved(before)
        return {
            "service": self.name,
            "state": breaker.state.value,
            "failures": breaker.failures,
            "opened_at": rfc3339(breaker.opened_at),
        }

    def _drop_child(self, family: Any, *labels: str) -> Any:
        """Remove this service's child of ``family`` (if any); return the no-op stand-in."""
        with suppress(KeyError):
            family.remove(self.name, *labels)
        return _NO_GAUGE

    def retire(self) -> None:
        """The service left the config: drop its label children so its series disappear."""
        metrics = self._metrics
        self._tokens_gauge = self._drop_child(metrics.ratelimit_tokens)
        self._breaker_gauge = self._drop_child(metrics.breaker_state)
        self._drop_child(metrics.ratelimit_wait_seconds)
        for status in self._http_children:
            self._drop_child(metrics.http_responses_total, str(status))
