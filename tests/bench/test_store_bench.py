"""Durable writes/s: the group-commit writer vs one commit per write (`make bench` only).

Both sides write the same full-row run upsert to a WAL database with synchronous=FULL on the
same disk in the same run, so the ratio is what group commit buys on this machine.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from automationd.core.ids import IdGenerator
from automationd.core.runstate import RunState
from automationd.records import Run, Trigger
from automationd.store.rows import w_run
from automationd.store.sqlite.migrate import migrate
from automationd.store.sqlite.sql import SQL
from automationd.store.sqlite.store import DB_NAME, open_sqlite
from automationd.store.write import Stmt, Write

pytestmark = pytest.mark.bench

SECONDS = 3.0
WRITERS = 1000
UPSERT_RUN = SQL[Stmt.RUN]  # the engine's full-row run upsert (store/rows.py w_run)


def _run_row(run_id: str, state: str) -> tuple[Any, ...]:
    """The engine's own run row (store/rows.py ``w_run``), so the bench follows the schema."""
    run = Run(
        id=run_id,
        job="bench-job",
        state=RunState(state),
        trigger=Trigger.MANUAL,
        created_at=1.0,
        started_at=2.0,
        attempts=1,
        payload={"k": 1},
        targets_total=1,
    )
    return w_run(run).params


def _attempt_row(run_id: str, finished: float | None, outcome: str | None) -> tuple[Any, ...]:
    return (run_id, 1, "perform", 0, None, 2.0, finished, outcome, None, None, None, None)


def _group_commit(
    state_dir: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop], per_await: int
) -> dict[str, float]:
    """WRITERS tasks each loop `await db.write(...)` for SECONDS; count durable writes."""

    async def main() -> dict[str, float]:
        async with open_sqlite(state_dir) as db:
            stop = False
            acked = 0
            ids = IdGenerator(random.Random(1))  # time-ordered, like real run ids

            async def writer() -> None:
                nonlocal acked
                while not stop:
                    run_id = ids.new(time.time())
                    if per_await == 1:
                        writes = [Write(Stmt.RUN, _run_row(run_id, "queued"), key=run_id)]
                    else:  # a run's life: created, attempt started, attempt ended, run ended
                        writes = [
                            Write(Stmt.RUN, _run_row(run_id, "queued"), key=run_id),
                            Write(Stmt.ATTEMPT, _attempt_row(run_id, None, None)),
                            Write(Stmt.ATTEMPT, _attempt_row(run_id, 3.0, "ok")),
                            Write(Stmt.RUN, _run_row(run_id, "succeeded"), key=run_id),
                        ][:per_await]
                    await db.commit(writes)
                    acked += 1

            started = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for _ in range(WRITERS):
                    tg.create_task(writer())
                await asyncio.sleep(SECONDS)
                stop = True
            elapsed = time.perf_counter() - started
            stats = db.stats
            return {
                "awaits_s": acked / elapsed,
                "rows_s": acked * per_await / elapsed,
                "batches": stats["batches"],
                "mean_batch": stats["writes"] / max(1, stats["batches"]),
                "commit_ms": 1000 * stats["commit_seconds"] / max(1, stats["batches"]),
            }

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def _one_commit_per_write(path: Path) -> dict[str, float]:
    """Plain sqlite3, synchronous=FULL, BEGIN/upsert/COMMIT per row for SECONDS."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    migrate(conn)
    n = 0
    ids = IdGenerator(random.Random(2))
    started = time.perf_counter()
    deadline = started + SECONDS
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(UPSERT_RUN, _run_row(ids.new(time.time()), "queued"))
        conn.execute("COMMIT")
        n += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return {
        "awaits_s": n / elapsed,
        "rows_s": n / elapsed,
        "batches": n,
        "mean_batch": 1.0,
        "commit_ms": 1000 * elapsed / max(1, n),
    }


def test_group_commit_vs_one_commit_per_write(tmp_path: Path) -> None:
    """Group commit sustains many times the durable writes/s of one commit per write."""
    results: dict[str, dict[str, float]] = {}
    (tmp_path / "plain").mkdir()
    results["sqlite3, 1 commit/write"] = _one_commit_per_write(tmp_path / "plain" / DB_NAME)
    results["group commit, asyncio, 1 row/await"] = _group_commit(
        tmp_path / "gc1", asyncio.new_event_loop, 1
    )
    results["group commit, uvloop, 1 row/await"] = _group_commit(
        tmp_path / "gc2", uvloop.new_event_loop, 1
    )
    results["group commit, uvloop, 4 rows/await (a run)"] = _group_commit(
        tmp_path / "gc4", uvloop.new_event_loop, 4
    )
    base = results["sqlite3, 1 commit/write"]["rows_s"]
    print(f"\n{WRITERS} concurrent writers x {SECONDS:g}s, WAL + synchronous=FULL, {tmp_path}")
    print(
        f"{'mode':<44}{'rows/s':>10}{'awaits/s':>10}{'batches':>9}{'rows/batch':>11}{'ms/commit':>10}{'ratio':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:<44}{r['rows_s']:>10.0f}{r['awaits_s']:>10.0f}{r['batches']:>9.0f}"
            f"{r['mean_batch']:>11.1f}{r['commit_ms']:>10.2f}{r['rows_s'] / base:>7.1f}x"
        )
    assert results["group commit, asyncio, 1 row/await"]["rows_s"] > 5 * base
