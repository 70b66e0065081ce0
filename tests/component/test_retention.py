"""Retention on a real SQLite file: old rows go, young and live rows and the DLQ stay."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from automationd.config.load import load_config
from automationd.config.model import RetentionConfig
from automationd.core.ids import IdGenerator, id_floor
from automationd.core.runstate import RunState, TargetState
from automationd.errors import ConfigError, ErrorKind
from automationd.records import Attempt, DlqEntry, Event, Phase, Run, RunError, Target, Trigger
from automationd.store.retention import MIN_BATCH, Retention
from automationd.store.rows import w_attempt, w_dlq, w_dlq_delete, w_event, w_run, w_target
from automationd.store.sqlite.store import SqliteStore, open_sqlite
from automationd.store.write import Write
from tests.support.clock import FakeClock

DAY = 86400.0
CONFIG = RetentionConfig(runs_max_age=30 * DAY, events_max_age=7 * DAY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    async with asyncio.timeout(5):
        async with open_sqlite(tmp_path / "state", clock=clock) as store:
            yield store


class Seeder:
    """Writes runs, targets, attempts (with output), DLQ entries and events at chosen ages."""

    def __init__(self, db: SqliteStore, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock
        self.rng = random.Random(7)

    def new_id(self, at: float) -> str:
        """An id for wall time ``at`` (a fresh generator: one generator never goes back)."""
        return IdGenerator(self.rng).new(at)

    async def run(
        self,
        age: float,
        state: RunState = RunState.SUCCEEDED,
        *,
        targets: int = 0,
        dead: bool = False,
    ) -> str:
        at = self.clock.time() - age
        rid = self.new_id(at)
        run = Run(
            id=rid,
            job="j",
            state=state,
            trigger=Trigger.MANUAL,
            created_at=at,
            attempts=1,
            targets_total=targets,
            payload={"age": age},
        )
        writes: list[Write] = [w_run(run)]
        writes += [
            w_target(Target(run_id=rid, idx=i, target=f"t{i}", state=TargetState.SUCCEEDED))
            for i in range(targets)
        ]
        attempt = Attempt(
            run_id=rid,
            n=1,
            phase=Phase.PERFORM,
            target=None,
            target_idx=-1,
            started_at=at,
            finished_at=at,
            outcome="ok",
        )
        writes.append(w_attempt(attempt, stdout="out", stderr="err"))
        if dead:
            writes.append(
                w_dlq(
                    DlqEntry(
                        id=self.new_id(at + 1),
                        run_id=rid,
                        job="j",
                        target=None,
                        target_idx=-1,
                        error=RunError(kind=ErrorKind.FATAL, message="boom"),
                        failed_at=at + 1,
                    )
                )
            )
        async with asyncio.timeout(5):
            await self.db.commit(writes)
        return rid

    async def event(self, age: float) -> str:
        at = self.clock.time() - age
        eid = self.new_id(at)
        async with asyncio.timeout(5):
            await self.db.commit([w_event(Event(id=eid, name="e", payload=None, created_at=at))])
        return eid

    async def count(self, table: str, where: str = "1", params: tuple[str, ...] = ()) -> int:
        async with asyncio.timeout(5):
            rows = await self.db._fetchall(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)
        return int(rows[0][0])


@pytest.fixture
def seed(db: SqliteStore, clock: FakeClock) -> Seeder:
    return Seeder(db, clock)


async def test_prune_removes_old_runs_with_rows_and_keeps_young_live_and_dlq(
    db: SqliteStore, clock: FakeClock, seed: Seeder
) -> None:
    """1. Seed old and young finished runs (targets, attempts with output), old live runs,
    an old run in the DLQ, and old and young events.
    2. One prune pass.
    Result: only old finished runs (with their targets and attempts) and old events are gone;
    young rows, live runs, the dead-lettered run and the DLQ itself are kept."""
    old = [await seed.run(40 * DAY, targets=2) for _ in range(5)]
    old.append(await seed.run(31 * DAY, RunState.FAILED))
    old.append(await seed.run(35 * DAY, RunState.CANCELLED))
    young = [await seed.run(29 * DAY, targets=1), await seed.run(60.0)]
    live = [
        await seed.run(50 * DAY, s) for s in (RunState.QUEUED, RunState.RUNNING, RunState.RETRYING)
    ]
    dead = await seed.run(45 * DAY, RunState.FAILED, dead=True)
    old_events = [await seed.event(8 * DAY) for _ in range(3)]
    young_event = await seed.event(6 * DAY)

    retention = Retention(db, clock, CONFIG)
    async with asyncio.timeout(5):
        counts = await retention.prune_once()

    assert counts == {"runs": len(old), "events": len(old_events)}
    for rid in old:
        for table, col in (("runs", "id"), ("targets", "run_id"), ("attempts", "run_id")):
            assert await seed.count(table, f"{col}=?", (rid,)) == 0, (table, rid)
    for rid in [*young, *live, dead]:
        assert await seed.count("runs", "id=?", (rid,)) == 1
        assert await seed.count("attempts", "run_id=?", (rid,)) == 1
    assert await seed.count("targets", "run_id=?", (young[0],)) == 1
    assert await seed.count("dlq", "run_id=?", (dead,)) == 1
    assert await seed.count("events") == 1
    assert await seed.count("events", "id=?", (young_event,)) == 1


async def test_dead_lettered_run_is_pruned_once_its_entry_is_purged(
    db: SqliteStore, clock: FakeClock, seed: Seeder
) -> None:
    """The DLQ is kept until purged; after a purge its old run is pruned like any other."""
    dead = await seed.run(45 * DAY, RunState.FAILED, dead=True)
    retention = Retention(db, clock, CONFIG)
    async with asyncio.timeout(5):
        assert (await retention.prune_once())["runs"] == 0
        (entry,) = await db.dlq_select(id=None, job="j", all=False)
        assert entry.run_id == dead
        await db.commit(w_dlq_delete([entry.id]))
        assert (await retention.prune_once())["runs"] == 1
    assert await seed.count("runs") == 0


async def test_prune_goes_in_small_batches_and_shares_the_writer(
    db: SqliteStore, clock: FakeClock, seed: Seeder
) -> None:
    """1. Seed 3 x MIN_BATCH + 7 old runs; prune with the smallest batch.
    2. While pruning, keep submitting ordinary writes.
    Result: every old run is gone after several steps, and each ordinary write was committed
    during the pass (the pruner never held the writer for the whole pass)."""
    n_old = 3 * MIN_BATCH + 7
    writes = [
        w_run(
            Run(
                id=seed.new_id(clock.time() - 40 * DAY),
                job="j",
                state=RunState.SUCCEEDED,
                trigger=Trigger.MANUAL,
                created_at=clock.time() - 40 * DAY,
            )
        )
        for _ in range(n_old)
    ]
    async with asyncio.timeout(5):
        await db.commit(writes)
    retention = Retention(db, clock, CONFIG, batch=MIN_BATCH, step_target=0.0)  # fixed size
    done_during: list[bool] = []

    async def traffic(prune: asyncio.Task[int]) -> None:
        while not prune.done():
            await seed.run(1.0)
            done_during.append(not prune.done())

    async with asyncio.timeout(5):
        async with asyncio.TaskGroup() as tg:
            prune = tg.create_task(retention.prune_runs(_floor(clock, 30 * DAY)))
            tg.create_task(traffic(prune))
    assert prune.result() == n_old
    assert retention.steps >= 4
    assert sum(done_during) >= 2
    assert await seed.count("runs", "id < ?", (_floor(clock, 30 * DAY),)) == 0


async def test_background_task_waits_first_delay_then_every_interval(
    db: SqliteStore, clock: FakeClock, seed: Seeder
) -> None:
    """``run()`` prunes after ``first_delay`` and again each ``prune_interval``, on the
    injected clock, logging ``retention.pruned`` when it removed something."""
    config = RetentionConfig(runs_max_age=10.0, events_max_age=10.0, prune_interval=60.0)
    retention = Retention(db, clock, config, first_delay=5.0)
    assert (retention.interval, Retention(db, clock, config).first_delay) == (60.0, 10.0)
    await seed.run(20.0)
    with structlog.testing.capture_logs() as logs:
        async with asyncio.timeout(5):
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(retention.run())
                await _settle()
                assert await seed.count("runs") == 1  # still waiting for first_delay
                clock.advance(5.0)
                await _until(lambda: _pruned(logs) == 1)  # a pass ends with its log line
                assert await seed.count("runs") == 0
                await seed.run(20.0)
                clock.advance(59.0)
                await _settle()
                assert await seed.count("runs") == 1
                clock.advance(1.0)
                await _until(lambda: _pruned(logs) == 2)
                assert await seed.count("runs") == 0
                task.cancel()
    pruned = [e for e in logs if e["event"] == "retention.pruned"]
    assert [e["runs"] for e in pruned] == [1, 1]


def _pruned(logs: list[dict[str, Any]]) -> int:
    return sum(e["event"] == "retention.pruned" for e in logs)


def test_prune_interval_config_key(tmp_path: Path) -> None:
    """``[retention] prune_interval`` is a duration (default 5m); a bad one names the key."""
    path = tmp_path / "a.toml"
    path.write_text("")
    assert load_config(path).retention.prune_interval == 300.0
    path.write_text('[retention]\nruns_max_age = "1s"\nprune_interval = "250ms"\n')
    cfg = load_config(path).retention
    assert (cfg.runs_max_age, cfg.prune_interval) == (1.0, 0.25)
    path.write_text('[retention]\nprune_interval = "soon"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "retention.prune_interval" in str(info.value)


def _floor(clock: FakeClock, age: float) -> str:
    return id_floor(clock.time() - age)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _until(cond: Callable[[], bool]) -> None:
    """Let the pruner's writer round trips finish (the caller's timeout bounds this)."""
    for _ in range(5000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never became true")
