"""Durable triggers and no-op runs with clients that behave like real ones, beside SqliteHuey.

Against the real daemon subprocess over its real Unix socket (tests/bench/loadgen.py):

1. Trigger → ack latency with ONE synchronous client (send, wait for the answer, repeat),
   beside Huey's enqueue latency from one thread. Targets: p50 ≤ 1 ms, p99 ≤ 3 ms.
2. No-op python runs/s end to end (from the first trigger until every run has ended) with 4
   and with 64 synchronous clients (one request in flight per connection), and with 4
   pipelining connections (1,024 in flight each); beside SqliteHuey fed by 4, 64 and 4
   producer threads. Targets: ≥ 3x, ≥ 8x, ≥ 10x Huey. Rounds alternate ours/Huey so both
   see the same machine; the table gives medians, and the daemon's CPU µs per run (all
   threads, and its event loop alone), the figure to judge a change by on a shared host.
   Ours runs with ``BENCH_WORKERS`` workers (see there why), and again with the default 16.
3. One run fanning out to 5,000 targets.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from statistics import median

import pytest

from tests.bench.harness import Row, print_table, scaled
from tests.bench.hueyside import WORKERS, huey_run
from tests.bench.loadgen import Load, drive, noop_daemon, one_client_latency, pct, succeeded
from tests.support.daemon import DaemonProcess, config_text

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("AUTOMATIOND_BENCH_ROUNDS", "3"))
PEER = f"SqliteHuey {WORKERS} threads"

# name, connections, requests in flight per connection, runs per round (ours, Huey), target
MODES = [
    ("4 sync clients", 4, 1, 12_000, 3_000, 3.0),
    ("64 sync clients", 64, 1, 25_600, 3_200, 8.0),
    ("4 pipelined conns", 4, 1024, 40_000, 3_000, 10.0),
]
# Our worker pool (``workers.max_concurrency``, attempts in flight) for these no-op async
# runs: at least the synchronous clients' requests in flight. With the default 16 every
# worker waits one durable commit per attempt (its start is stored before the action runs),
# so 64 clients or a pipeline measure the pool, not the engine: reported as a second line.
BENCH_WORKERS = 256
DEFAULT_WORKERS = 16


def test_trigger_latency_one_client(short_tmp: Path) -> None:
    """One synchronous client: durable trigger → ack p50 ≤ 1 ms and p99 ≤ 3 ms (reported
    beside Huey's enqueue from one thread)."""
    n = scaled(4_000)
    (short_tmp / "ours").mkdir()
    d = noop_daemon(short_tmp / "ours")
    try:
        ours = one_client_latency(d.socket, n)
        assert d.stop() == 0
    finally:
        d.close()
    (short_tmp / "huey").mkdir()
    _, huey = huey_run(short_tmp / "huey", scaled(2_000), 1, timed=True)
    ms = 1000.0
    rows = [
        Row(f"trigger→ack p50, 1 sync client ({n})", pct(ours, 0.5) * ms, pct(huey, 0.5) * ms,
            "ms, target ≤ 1", "Huey enqueue, 1 thread", higher_is_better=False),
        Row("trigger→ack p99", pct(ours, 0.99) * ms, pct(huey, 0.99) * ms,
            "ms, target ≤ 3", "Huey enqueue, 1 thread", higher_is_better=False),
        Row("trigger→ack max", max(ours) * ms, max(huey) * ms, "ms",
            "Huey enqueue, 1 thread", higher_is_better=False),
    ]  # fmt: skip
    print_table("durable trigger latency, one synchronous client", rows)
    assert succeeded(short_tmp / "ours") == n + 200  # the 200 warm-up triggers ran too


def _ours(base: Path, conns: int, window: int, n: int, workers: int) -> Load:
    d = noop_daemon(base, extra=f"[workers]\nmax_concurrency = {workers}\n")
    try:
        drive(d, conns=conns, window=window, per_conn=max(1, 400 // conns))  # warm-up
        load = drive(d, conns=conns, window=window, per_conn=n // conns)
        assert d.stop() == 0
    finally:
        d.close()
    assert succeeded(base) == load.runs + max(1, 400 // conns) * conns
    return load


def test_runs_per_second_vs_huey(short_tmp: Path) -> None:
    """No-op runs/s end to end with 4 and 64 synchronous clients and 4 pipelined ones, each
    beside SqliteHuey in the same run (targets 3x, 8x, 10x), with the daemon's CPU per run;
    and with the default worker pool where it is the bound."""
    rows: list[Row] = []
    for name, conns, window, n_ours, n_huey, target in MODES:
        ours: list[Load] = []
        small: list[Load] = []
        huey: list[float] = []
        pooled = conns * window > DEFAULT_WORKERS
        for i in range(ROUNDS):
            tag = f"{conns}x{window}-{i}"
            for sub in ("o", "d", "h"):
                (short_tmp / f"{sub}{tag}").mkdir()
            ours.append(_ours(short_tmp / f"o{tag}", conns, window, scaled(n_ours), BENCH_WORKERS))
            huey.append(huey_run(short_tmp / f"h{tag}", scaled(n_huey), conns)[0])
            if pooled:
                small.append(
                    _ours(short_tmp / f"d{tag}", conns, window, scaled(n_ours), DEFAULT_WORKERS)
                )
        rows += [
            Row(f"{name}: runs/s, median of {ROUNDS}", median(x.runs_per_s for x in ours),
                median(huey), f"runs/s, target ≥ {target:g}x", PEER),
            *(Row(f"  round {i + 1}", o.runs_per_s, h, "runs/s", PEER)
              for i, (o, h) in enumerate(zip(ours, huey, strict=True))),
            Row("  triggers acked/s (durable), median", median(x.acks_per_s for x in ours),
                None, "acks/s"),
            Row("  daemon CPU per run, median", median(x.cpu_us_per_run for x in ours),
                None, "µs/run, all threads", higher_is_better=False),
            Row("  of it the event loop, median", median(x.loop_us_per_run for x in ours),
                None, "µs/run", higher_is_better=False),
        ]  # fmt: skip
        if pooled:
            rows.append(
                Row(f"  with the default {DEFAULT_WORKERS} workers, median",
                    median(x.runs_per_s for x in small), median(huey), "runs/s", PEER)
            )  # fmt: skip
    print_table(f"durable no-op runs end to end, real clients, {BENCH_WORKERS} workers", rows)
    assert all(r.ours > 0 for r in rows)


def _fanout(base: Path, n: int, workers: int) -> float:
    """Targets/s of one run fanning out to ``n`` no-op targets."""
    base.mkdir()
    d = DaemonProcess(
        base,
        config_text(
            base,
            daemon='log_level = "warning"',
            extra=f"[workers]\nmax_concurrency = {workers}\n",
            jobs=f"""
[[jobs]]
name = "fan"
on = "never"
targets = {list(range(n))}
action = {{ type = "python", callable = "benchacts:noop" }}
""",
        ),
    )
    (base / "benchacts.py").write_text("async def noop(ctx):\n    return None\n")
    d.start()
    try:
        t0 = time.perf_counter()
        run = d.call_sync("jobs.trigger", {"name": "fan"})
        while True:
            got = d.call_sync("runs.list", {"job": "fan", "limit": 1})[0]
            if got["state"] not in ("queued", "running", "retrying"):
                break
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        assert got["id"] == run["id"] and got["state"] == "succeeded", got
        assert got["targets"]["succeeded"] == n
        assert d.stop() == 0
    finally:
        d.close()
    return n / elapsed


def test_fanout_5000_targets(short_tmp: Path) -> None:
    """One run fanning out to 5,000 targets (reported in targets/s), with the bench's worker
    pool and with the default one (each target's attempt is stored as started before it
    runs, so with 16 workers the targets go in waves of 16 durable commits)."""
    n = scaled(5000)
    rows = [
        Row(f"targets/s, one run of {n} targets", _fanout(short_tmp / "fan", n, BENCH_WORKERS),
            None, f"targets/s, {BENCH_WORKERS} workers"),
        Row(f"  with the default {DEFAULT_WORKERS} workers",
            _fanout(short_tmp / "fan16", n, DEFAULT_WORKERS), None, "targets/s"),
    ]  # fmt: skip
    print_table("fan-out", rows)
    assert all(r.ours > 0 for r in rows)
