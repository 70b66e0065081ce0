"""Service gates under asyncio: pacing, FIFO hand-off, 429 pauses, breakers, budgets, reload.

Timing tests run on the real clock with short rates; bookkeeping tests use a hand-stepped
clock (``StepClock``) because they never wait.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from automationd.clock import Clock, SystemClock
from automationd.config.model import Backoff, BreakerConfig, ServiceConfig
from automationd.engine.services import ServiceGate, ServiceRegistry
from automationd.errors import ActionError, ErrorKind
from automationd.obs.metrics import Metrics
from automationd.units import Rate, parse_rate, parse_rfc3339


class CountingClock(SystemClock):
    """The real clock, counting how often anything goes to sleep on it (= timer wake-ups)."""

    def __init__(self) -> None:
        self.sleeps = 0

    async def sleep_until(self, deadline: float) -> None:
        self.sleeps += 1
        await super().sleep_until(deadline)


class StepClock:
    """A clock moved by hand, for checks that never wait."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_700_000_000.0

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wall, dt.UTC)

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep_until(self, deadline: float) -> None:
        raise AssertionError("StepClock tests must not wait")

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def svc(name: str = "api", rate: str | None = None, **kw: Any) -> ServiceConfig:
    return ServiceConfig(name=name, rate=parse_rate(rate) if rate else None, **kw)


def registry(
    *configs: ServiceConfig, clock: Clock | None = None
) -> tuple[ServiceRegistry, Metrics]:
    metrics = Metrics()
    reg = ServiceRegistry({c.name: c for c in configs}, clock or SystemClock(), metrics)
    return reg, metrics


def gate_of(reg: ServiceRegistry, name: str = "api") -> ServiceGate:
    gate = reg.get(name)
    assert gate is not None
    return gate


async def acquire_all(gate: ServiceGate, n: int, *, hold: float = 0.0) -> list[float]:
    """Start ``n`` callers in order; return the monotonic time each was admitted, in order."""
    admitted: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        async with gate.slot(is_retry=False):
            admitted.append((i, time.monotonic()))
            await asyncio.sleep(hold)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(one(i), name=f"caller:{i}")
    assert [i for i, _ in admitted] == list(range(n)), "admission order is FIFO"
    return [t for _, t in admitted]


async def test_rate_paces_thirteen_grants() -> None:
    """13 callers at 4/s, burst 1, concurrency 8 span ~3 s and no 1 s window holds over 5."""
    reg, metrics = registry(svc(rate="4/s", burst=1, concurrency=8))
    async with asyncio.timeout(6):
        times = await acquire_all(gate_of(reg), 13)
    span = times[-1] - times[0]
    assert 2.85 <= span <= 4.0
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t - start <= 1.0) <= 5
    waits = metrics.registry.get_sample_value(
        "automationd_ratelimit_wait_seconds_count", {"service": "api"}
    )
    assert waits == 13


async def test_fifo_with_one_wake_per_token() -> None:
    """Waiters are admitted in arrival order and only the head ever sleeps on the clock."""
    clock = CountingClock()
    reg, _ = registry(svc(rate="40/s", burst=1), clock=clock)
    async with asyncio.timeout(5):
        await acquire_all(gate_of(reg), 12)
    # 11 callers had to wait for a token: one timer sleep each (a rare early wake adds one).
    # A thundering herd would sleep every waiter on every token: ~66 sleeps.
    assert 11 <= clock.sleeps <= 13


async def test_rate_limited_report_pauses_the_service() -> None:
    """report(RATE_LIMITED, retry_after=2) holds every acquisition for 2 s, then lets them go."""
    reg, _ = registry(svc(rate="100/s", burst=10))
    gate = gate_of(reg)
    with capture_logs() as logs:
        gate.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=2.0)
    assert [e["event"] for e in logs] == ["service.paused"]
    assert logs[0]["service"] == "api" and logs[0]["until_s"] == 2.0
    assert reg.limits_list()[0]["paused_until"] is not None
    assert reg.limits_list()[0]["paused_reason"] == "rate_limited"  # the 429 (web limits page)
    start = time.monotonic()
    async with asyncio.timeout(5):
        times = await acquire_all(gate, 3)
    assert 1.8 <= times[0] - start <= 2.2
    assert times[-1] - start <= 2.2
    assert reg.limits_list()[0]["paused_until"] is None
    assert reg.limits_list()[0]["paused_reason"] is None


async def test_breaker_opens_fails_fast_and_admits_one_probe() -> None:
    """After 3 failures the 4th slot() fails at once; after reset exactly one probe goes."""
    reg, metrics = registry(svc(breaker=BreakerConfig(failures=3, reset=0.2)))
    gate = gate_of(reg)
    async with asyncio.timeout(5):
        with capture_logs() as logs:
            for _ in range(3):
                async with gate.slot(is_retry=False):
                    gate.report(ok=False, kind=ErrorKind.RETRYABLE, retry_after=None)
        assert "breaker.opened" in [e["event"] for e in logs]
        start = time.monotonic()
        with pytest.raises(ActionError) as refused:
            async with gate.slot(is_retry=False):
                pytest.fail("an open breaker admitted an attempt")
        assert time.monotonic() - start < 0.05
        assert refused.value.kind is ErrorKind.BREAKER_OPEN
        assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 0.2
        [row] = reg.breakers_list()
        assert (row["state"], row["failures"]) == ("open", 3)
        assert parse_rfc3339(row["opened_at"]) == pytest.approx(time.time(), abs=5)
        gauge = {"service": "api"}
        assert metrics.registry.get_sample_value("automationd_breaker_state", gauge) == 2

        await asyncio.sleep(0.25)
        async with gate.slot(is_retry=True):  # the probe
            assert reg.breakers_list()[0]["state"] == "half_open"
            assert metrics.registry.get_sample_value("automationd_breaker_state", gauge) == 1
            with pytest.raises(ActionError) as second:
                async with gate.slot(is_retry=False):
                    pytest.fail("a second probe was admitted")
            assert second.value.kind is ErrorKind.BREAKER_OPEN
            gate.report(ok=True, kind=None, retry_after=None)
        assert reg.breakers_list()[0] == {
            "service": "api",
            "state": "closed",
            "failures": 0,
            "opened_at": None,
        }
        assert metrics.registry.get_sample_value("automationd_breaker_state", gauge) == 0
        async with gate.slot(is_retry=False):
            pass


async def test_cancelled_probe_gives_the_probe_back() -> None:
    """A half-open probe cancelled mid-attempt lets the next caller probe at once."""
    reg, _ = registry(svc(breaker=BreakerConfig(failures=1, reset=0.05)))
    gate = gate_of(reg)
    async with asyncio.timeout(5):
        async with gate.slot(is_retry=False):
            gate.report(ok=False, kind=ErrorKind.TIMEOUT, retry_after=None)
        await asyncio.sleep(0.1)
        entered = asyncio.Event()

        async def probe() -> None:
            async with gate.slot(is_retry=False):
                entered.set()
                await asyncio.Event().wait()

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(probe(), name="probe")
            await entered.wait()
            task.cancel()
        async with gate.slot(is_retry=False):  # would raise BREAKER_OPEN if the probe leaked
            gate.report(ok=True, kind=None, retry_after=None)
    assert reg.breakers_list()[0]["state"] == "closed"


async def test_probe_that_leaves_unreported_gives_the_probe_back() -> None:
    """A half-open probe that exits with an error before any report (the engine draining)
    lets the next caller probe at once instead of refusing it for a whole ``reset``."""
    reg, _ = registry(svc(breaker=BreakerConfig(failures=1, reset=0.3)))
    gate = gate_of(reg)
    async with asyncio.timeout(5):
        async with gate.slot(is_retry=False):
            gate.report(ok=False, kind=ErrorKind.TIMEOUT, retry_after=None)
        await asyncio.sleep(0.35)
        with pytest.raises(LookupError):
            async with gate.slot(is_retry=False):  # the probe, gone without an answer
                raise LookupError("drained before the call")
        async with gate.slot(is_retry=False):  # would raise BREAKER_OPEN if the probe leaked
            gate.report(ok=True, kind=None, retry_after=None)
    assert reg.breakers_list()[0]["state"] == "closed"


async def test_breaker_opening_refuses_callers_already_queued() -> None:
    """Callers queued before the breaker opened are refused at their turn, spending no token."""
    reg, _ = registry(svc(rate="5/s", burst=1, breaker=BreakerConfig(failures=1, reset=60.0)))
    gate = gate_of(reg)
    outcomes: list[ErrorKind | None] = []

    async def one() -> None:
        try:
            async with gate.slot(is_retry=False):
                outcomes.append(None)
        except ActionError as exc:
            outcomes.append(exc.kind)

    async with asyncio.timeout(5):
        async with gate.slot(is_retry=False), asyncio.TaskGroup() as tg:
            tg.create_task(one(), name="queued:0")
            tg.create_task(one(), name="queued:1")
            await asyncio.sleep(0.01)
            gate.report(ok=False, kind=ErrorKind.RETRYABLE, retry_after=None)
    assert outcomes == [ErrorKind.BREAKER_OPEN, ErrorKind.BREAKER_OPEN]
    assert gate.waiting == 0 and gate.in_flight == 0


@pytest.mark.parametrize("victim", [0, 1], ids=["head", "middle"])
async def test_cancelled_waiter_does_not_leak_its_place(victim: int) -> None:
    """Cancelling a waiter (the sleeping head or one behind it) costs the others nothing."""
    reg, _ = registry(svc(rate="10/s", burst=1))
    gate = gate_of(reg)
    admitted: dict[int, float] = {}

    async def one(i: int) -> None:
        async with gate.slot(is_retry=False):
            admitted[i] = time.monotonic()

    async with asyncio.timeout(5):
        async with gate.slot(is_retry=False):  # spends the one token
            pass
        start = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(i), name=f"waiter:{i}") for i in range(3)]
            await asyncio.sleep(0.03)
            assert gate.waiting == 3
            tasks[victim].cancel()
    survivors = [i for i in range(3) if i != victim]
    assert sorted(admitted) == survivors
    first, second = (admitted[i] - start for i in survivors)
    assert 0.07 <= first <= 0.15 and 0.17 <= second <= 0.25  # next token, then the one after
    assert gate.waiting == 0 and gate.in_flight == 0


async def test_concurrency_cap_hands_freed_slots_in_order() -> None:
    """With concurrency 2, never more than 2 callers are inside and they enter FIFO."""
    reg, _ = registry(svc(concurrency=2))
    gate = gate_of(reg)
    inside = peak = 0
    order: list[int] = []

    async def one(i: int) -> None:
        nonlocal inside, peak
        async with gate.slot(is_retry=False):
            order.append(i)
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        for i in range(7):
            tg.create_task(one(i), name=f"caller:{i}")
        await asyncio.sleep(0.005)
        assert reg.limits_list()[0]["in_flight"] == 2
        assert reg.limits_list()[0]["waiting"] == 5
    assert peak == 2 and order == list(range(7))
    assert gate.in_flight == 0


async def test_retry_budget_holds_retries_not_first_attempts() -> None:
    """Past its budget a retry waits, while a first attempt behind it goes straight through."""
    reg, _ = registry(svc(retry_budget=0.0, retry_budget_floor=Rate(1, 3600.0)))
    gate = gate_of(reg)
    async with asyncio.timeout(5):
        async with gate.slot(is_retry=True):  # under the floor: allowed
            pass
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2), gate.slot(is_retry=True):
                pytest.fail("the budget let a second retry through")
        async with gate.slot(is_retry=False):
            pass
    assert gate.waiting == 0


def test_rate_limited_without_retry_after_backs_off_exponentially() -> None:
    """Consecutive 429s without Retry-After pause 16, 32, 64, 64 s; a success starts over."""
    clock = StepClock()
    backoff = Backoff(base=16.0, max=64.0, multiplier=2.0, jitter=0.0)
    reg, _ = registry(svc(rate="1/s", rate_limited_backoff=backoff), clock=clock)
    gate = gate_of(reg)

    def paused_for() -> float:
        until = reg.limits_list()[0]["paused_until"]
        return 0.0 if until is None else parse_rfc3339(until) - clock.time()

    seen = []
    for _ in range(4):
        gate.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=None)
        seen.append(round(paused_for(), 3))
        gate.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=None)  # sent pre-pause
        clock.advance(100)
    assert seen == [16.0, 32.0, 64.0, 64.0]
    gate.report(ok=True, kind=None, retry_after=None)
    gate.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=None)
    assert paused_for() == pytest.approx(16.0)
    clock.advance(100)
    gate.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=7200.0)
    assert paused_for() == pytest.approx(3600.0)  # capped at max_retry_after


def test_observe_http_counts_and_follows_partner_headers() -> None:
    """Responses are counted by code; Remaining lowers the tokens and 0 pauses until Reset."""
    clock = StepClock()
    reg, metrics = registry(svc(rate="10/s", burst=10), clock=clock)
    gate = gate_of(reg)
    gate.observe_http(200, {"RateLimit-Remaining": "3", "RateLimit-Reset": "20"})
    row = reg.limits_list()[0]
    assert (row["tokens"], row["paused_until"]) == (3.0, None)
    sample = metrics.registry.get_sample_value
    assert sample("automationd_ratelimit_tokens", {"service": "api"}) == 3.0
    reset = str(int(clock.time()) + 30)
    with capture_logs() as logs:
        gate.observe_http(200, {"x-ratelimit-remaining": "0", "X-RateLimit-Reset": reset})
    assert logs[0]["event"] == "service.paused" and logs[0]["until_s"] == 30.0
    row = reg.limits_list()[0]
    assert row["tokens"] == 0.0
    assert parse_rfc3339(row["paused_until"]) == pytest.approx(clock.time() + 30, abs=0.01)
    gate.observe_http(503, {})
    assert sample("automationd_http_responses_total", {"service": "api", "code": "200"}) == 2
    assert sample("automationd_http_responses_total", {"service": "api", "code": "503"}) == 1


def test_limits_and_breakers_list_rows() -> None:
    """limits.list shows every service (nulls where unlimited); breakers.list only breakers."""
    clock = StepClock()
    reg, _ = registry(
        svc("ads", rate="200/1h", burst=20, concurrency=4, breaker=BreakerConfig()),
        svc("plain"),
        clock=clock,
    )
    assert reg.limits_list() == [
        {
            "service": "ads",
            "rate": "200/1h",
            "burst": 20,
            "tokens": 20.0,
            "waiting": 0,
            "paused_until": None,
            "paused_reason": None,
            "in_flight": 0,
            "concurrency": 4,
        },
        {
            "service": "plain",
            "rate": None,
            "burst": None,
            "tokens": None,
            "waiting": 0,
            "paused_until": None,
            "paused_reason": None,
            "in_flight": 0,
            "concurrency": None,
        },
    ]
    assert reg.breakers_list() == [
        {"service": "ads", "state": "closed", "failures": 0, "opened_at": None}
    ]
    assert reg.get(None) is None and reg.get("nope") is None
    assert "ads" in reg and "nope" not in reg


def test_fatal_answer_is_not_a_service_failure() -> None:
    """A fatal error (e.g. a 4xx) means the service answered: it resets the failure run."""
    reg, _ = registry(svc(breaker=BreakerConfig(failures=2, reset=60.0)), clock=StepClock())
    gate = gate_of(reg)
    for kind in (ErrorKind.RETRYABLE, ErrorKind.FATAL, ErrorKind.TIMEOUT, ErrorKind.CANCELLED):
        gate.report(ok=False, kind=kind, retry_after=None)
    assert reg.breakers_list()[0]["state"] == "closed"
    gate.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=0.0)
    assert reg.breakers_list()[0]["state"] == "open"


def test_reconfigure_keeps_live_state_where_the_service_survives() -> None:
    """Reload keeps each surviving gate object, its breaker and tokens; drops the removed."""
    clock = StepClock()
    reg, metrics = registry(
        svc("ads", rate="10/s", burst=10, breaker=BreakerConfig(failures=1, reset=60.0)),
        svc("old", rate="1/s"),
        clock=clock,
    )
    ads = gate_of(reg, "ads")
    ads.report(ok=False, kind=ErrorKind.RETRYABLE, retry_after=None)
    ads.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=30.0)
    reg.reconfigure(
        {
            "ads": svc("ads", rate="5/s", burst=4, breaker=BreakerConfig(failures=3, reset=9.0)),
            "new": svc("new"),
        }
    )
    assert reg.get("ads") is ads
    assert reg.get("old") is None and reg.get("new") is not None
    row = reg.limits_list()[0]
    assert (row["service"], row["rate"], row["burst"], row["tokens"]) == ("ads", "5/s", 4, 4.0)
    assert row["paused_until"] is not None
    assert reg.breakers_list()[0]["state"] == "open"
    sample = metrics.registry.get_sample_value
    assert sample("automationd_ratelimit_tokens", {"service": "old"}) is None
    clock.advance(9.0)
    assert reg.breakers_list()[0]["state"] == "half_open"  # the new reset applies
