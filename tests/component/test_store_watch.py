"""Store.watch on a real SQLite store: the observer is told each batch's writes once they
are durable, and only then; the new reads the console uses answer from indexes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from automationd.core.runstate import RunState
from automationd.records import Run, Trigger
from automationd.store.api import RunQuery
from automationd.store.rows import w_run
from automationd.store.sqlite.store import open_sqlite
from automationd.store.write import Write


def _run(i: int, state: RunState, job: str = "a", trigger: Trigger = Trigger.MANUAL) -> Run:
    return Run(id=f"{i:032x}", job=job, state=state, trigger=trigger, created_at=1.0 + i)


async def test_observer_sees_durable_batches_only_while_watching(tmp_path: Path) -> None:
    """1. No observer: writes land, nobody is told.  2. Watching: each batch's writes arrive
    after the commit (a read then sees them).  3. watch(None): told nothing more."""
    seen: list[list[Sequence[Write]]] = []
    async with asyncio.timeout(10), open_sqlite(tmp_path) as store:
        await store.commit([w_run(_run(1, RunState.QUEUED))])

        async def observer_reads() -> None:
            for batch in seen:
                for writes in batch:
                    for w in writes:
                        assert await store.run(w.params[0]) is not None

        store.watch(seen.append)
        await store.commit([w_run(_run(2, RunState.QUEUED))])
        store.post([w_run(_run(3, RunState.RUNNING)), w_run(_run(3, RunState.SUCCEEDED))])
        await store.commit([])
        assert [w.params[0] for b in seen for ws in b for w in ws] == [
            f"{2:032x}",
            f"{3:032x}",
            f"{3:032x}",
        ]
        await observer_reads()
        store.watch(None)
        count = len(seen)
        await store.commit([w_run(_run(4, RunState.QUEUED))])
        assert len(seen) == count


async def test_console_reads(tmp_path: Path) -> None:
    """runs_window stops at its limit or its window and says where it stopped; a state
    filter answers newest first; recent_states gives each job's outcomes newest first."""
    async with asyncio.timeout(10), open_sqlite(tmp_path) as store:
        states = [RunState.SUCCEEDED, RunState.FAILED, RunState.SUCCEEDED, RunState.SKIPPED]
        await store.commit([w_run(_run(i, states[i % 4], job=f"j{i % 2}")) for i in range(1, 41)])
        failed = await store.runs(RunQuery(state="failed", limit=3))
        assert [r.id for r in failed] == [f"{i:032x}" for i in (37, 33, 29)]
        found, cursor = await store.runs_window(RunQuery(state="failed", limit=3), scan=100)
        assert [r.id for r in found] == [f"{i:032x}" for i in (37, 33, 29)] and cursor is None
        found, cursor = await store.runs_window(RunQuery(state="failed", limit=50), scan=10)
        assert [r.id for r in found] == [f"{i:032x}" for i in (37, 33)]
        assert cursor == f"{31:032x}"  # the window was runs 40..31: go on below 31
        found, cursor = await store.runs_window(
            RunQuery(state="failed", limit=50, before=f"{3:032x}"), scan=10
        )
        assert [r.id for r in found] == [f"{1:032x}"] and cursor is None  # nothing older left
        recent = await store.recent_states(["j0", "j1", "none"], 3)
        assert recent == {
            "j0": ["succeeded", "succeeded", "succeeded"],
            "j1": ["failed", "failed", "failed"],  # (its skipped runs have no outcome)
            "none": [],
        }
