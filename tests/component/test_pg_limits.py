"""A service's limits shared by a fleet: two gates (two daemons) on one real PostgreSQL row."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from automationd.clock import SystemClock
from automationd.config.model import BreakerConfig, ServiceConfig, StoreConfig
from automationd.engine.fleetgate import FleetGate
from automationd.errors import ActionError, ErrorKind
from automationd.fleet.leases import Leases
from automationd.obs.metrics import Metrics
from automationd.store.pg.limits import SharedLimits
from automationd.store.pg.store import PgStore, open_pg
from automationd.units import Rate


@contextlib.asynccontextmanager
async def two_gates(dsn: str, config: ServiceConfig) -> AsyncIterator[tuple[FleetGate, FleetGate]]:
    """Two daemons' gates for one service: two stores (two writers, two pools). Each gate's
    store is kept in ``STORES`` so a test can wait for the reports it sent."""
    cfg = StoreConfig(backend="postgresql", dsn=dsn)
    async with (
        open_pg(cfg, Leases("a", shares_work=True), health_interval=60) as a,
        open_pg(cfg, Leases("b", shares_work=True), health_interval=60) as b,
    ):
        yield _gate(a, config), _gate(b, config)


STORES: dict[int, PgStore] = {}


def _gate(store: PgStore, config: ServiceConfig) -> FleetGate:
    gate = FleetGate(config, SystemClock(), Metrics(), limits=SharedLimits(store))
    STORES[id(gate)] = store
    return gate


async def _settle(gate: FleetGate) -> None:
    """Reports ride the next store batch: wait until it committed."""
    await STORES[id(gate)].commit([])


async def test_a_429_on_one_daemon_pauses_the_service_on_the_other(pg_dsn: str) -> None:
    """1. daemon a's attempt gets a 429 with Retry-After: 1; 2. daemon b asks for a slot.
    Result: b waits out the pause (about 1 s) although it never saw the 429."""
    config = ServiceConfig(name="partner", rate=Rate(100, 1.0, "100/s"), burst=10)
    async with asyncio.timeout(20), two_gates(pg_dsn, config) as (a, b):
        async with a.slot(is_retry=False):
            pass
        a.report(ok=False, kind=ErrorKind.RATE_LIMITED, retry_after=1.0)
        await _settle(a)
        t0 = time.monotonic()
        async with b.slot(is_retry=False):
            waited = time.monotonic() - t0
        assert 0.8 <= waited <= 2.5
        assert b.limits()["scope"] == "fleet"


async def test_failures_on_one_daemon_open_the_breaker_for_both(pg_dsn: str) -> None:
    """1. daemon a reports 3 consecutive service failures (breaker failures = 3);
    2. daemon b asks for a slot. Result: b is refused at once with ``breaker_open`` and a
    retry-after near the reset; after the reset one probe passes, and its success closes the
    breaker for both."""
    config = ServiceConfig(name="flaky", breaker=BreakerConfig(failures=3, reset=1.0))
    async with asyncio.timeout(20), two_gates(pg_dsn, config) as (a, b):
        for _ in range(3):
            async with a.slot(is_retry=False):
                pass
            a.report(ok=False, kind=ErrorKind.RETRYABLE, retry_after=None)
        await _settle(a)
        with pytest.raises(ActionError) as refused:
            async with b.slot(is_retry=False):
                pass
        assert refused.value.kind is ErrorKind.BREAKER_OPEN
        assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 1.0
        row = b.breaker_row()
        assert row is not None and row["state"] == "open" and row["failures"] == 3
        await asyncio.sleep(1.1)
        async with b.slot(is_retry=False):  # the half-open probe
            with pytest.raises(ActionError):  # nobody else gets in while it is out
                async with a.slot(is_retry=False):
                    pass
        b.report(ok=True, kind=None, retry_after=None)
        await _settle(b)
        async with a.slot(is_retry=False):
            pass
        assert a.breaker_row()["state"] == "closed"  # type: ignore[index]


async def test_two_daemons_never_exceed_the_bucket_together(pg_dsn: str) -> None:
    """Two gates draining one bucket (rate 40/s, burst 4) as fast as they can for 1.5 s:
    together at most burst + rate x elapsed grants, and close to it."""
    config = ServiceConfig(name="bucket", rate=Rate(40, 1.0, "40/s"), burst=4)
    grants: list[float] = []

    async def drain(gate: FleetGate, until: float) -> None:
        while time.monotonic() < until:
            async with gate.slot(is_retry=False):
                grants.append(time.monotonic())

    async with asyncio.timeout(20), two_gates(pg_dsn, config) as (a, b):
        t0 = time.monotonic()
        await asyncio.gather(drain(a, t0 + 1.5), drain(b, t0 + 1.5))
        elapsed = grants[-1] - t0
        assert len(grants) <= 4 + 40 * elapsed + 1
        assert len(grants) >= 40 * 1.5 * 0.7
