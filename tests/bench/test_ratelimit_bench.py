"""Rate-limit accuracy under load and the cost of TokenBucket.take() (`make bench` only).

AUTOMATIOND_BENCH_SCALE shortens the run: 0.1 runs the 60 s accuracy bench for 6 s.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from automationd.clock import SystemClock
from automationd.config.model import ServiceConfig
from automationd.core.ratelimit import TokenBucket
from automationd.engine.services import ServiceRegistry
from automationd.obs.metrics import Metrics
from automationd.units import Rate

SCALE = float(os.environ.get("AUTOMATIOND_BENCH_SCALE", "1"))
RATE = 50
BURST = 5
CALLERS = 64


def max_overgrant(times: list[float], rate: float, burst: int) -> float:
    """max over windows [t_i, t_j] of grants - (burst + rate x (t_j - t_i)), in O(n)."""
    worst = best_start = -float("inf")
    for j, t in enumerate(times):
        best_start = max(best_start, rate * t - j)
        worst = max(worst, (j + 1 - rate * t) + best_start - burst)
    return worst


def table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


@pytest.mark.bench
async def test_gate_holds_rate_with_many_callers() -> None:
    """64 callers hammering a 50/s burst-5 gate see 50/s within 1 % and never over-grant."""
    duration = 60.0 * SCALE
    config = ServiceConfig(name="bench", rate=Rate(RATE, 1.0, f"{RATE}/s"), burst=BURST)
    clock = SystemClock()
    reg = ServiceRegistry({"bench": config}, clock, Metrics())
    gate = reg.get("bench")
    assert gate is not None
    grants: list[float] = []
    start = time.monotonic()
    stop = start + duration

    async def caller() -> None:
        while time.monotonic() < stop:
            async with gate.slot(is_retry=False):
                grants.append(time.monotonic())

    async with asyncio.timeout(duration + 10), asyncio.TaskGroup() as tg:
        for i in range(CALLERS):
            tg.create_task(caller(), name=f"bench:{i}")
    grants = [t for t in grants if t < stop]
    elapsed = grants[-1] - grants[0]
    steady = (len(grants) - BURST) / elapsed  # the first BURST grants came out of the bucket
    over = max_overgrant(grants, RATE, BURST)
    table(
        [
            ("duration", f"{duration:.1f} s, {CALLERS} callers, rate {RATE}/s burst {BURST}"),
            ("grants", f"{len(grants)} (ideal {BURST + RATE * duration:.0f})"),
            ("observed rate", f"{steady:.3f}/s ({100 * (steady / RATE - 1):+.3f} %)"),
            ("max over-grant", f"{over:+.4f} tokens vs burst + rate x elapsed"),
        ]
    )
    assert abs(steady / RATE - 1) <= 0.01
    assert over <= 0.01


@pytest.mark.bench
def test_take_cost() -> None:
    """TokenBucket.take() costs well under a microsecond per call, granting or refusing."""
    n = max(10_000, int(1_000_000 * SCALE))

    def loop_overhead() -> float:
        now = 0.0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            now += 1e-3
        return (time.perf_counter_ns() - t0) / n

    base = loop_overhead()
    rows = [("loop overhead", f"{base:.0f} ns/iteration (subtracted below)")]
    for label, step in (("granting", 1e-3), ("refusing", 1e-7)):
        bucket = TokenBucket(Rate(RATE * 20, 1.0), BURST, 0.0)
        take = bucket.take
        now = 0.0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            now += step
            take(now)
        ns = (time.perf_counter_ns() - t0) / n - base
        rows.append((f"take() {label}", f"{ns:.0f} ns/call over {n} calls"))
        assert ns < 5_000
    table(rows)
