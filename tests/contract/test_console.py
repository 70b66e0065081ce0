"""Store contract: what the web console reads and watches (issue 13): durable batches told
to an observer, a bounded runs window, recent outcomes per job, events below an id and by an
exact name, the dead-letter summary over the newest entries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from automationd.core.runstate import RunState
from automationd.errors import ErrorKind
from automationd.records import DlqEntry, Event, Run, RunError, Trigger
from automationd.store.api import RunQuery, Store
from automationd.store.rows import w_dlq, w_event, w_run
from automationd.store.write import Write

T0 = 1_780_000_000.0


def _run(i: int, state: RunState, job: str = "a") -> Run:
    return Run(id=f"{i:032x}", job=job, state=state, trigger=Trigger.MANUAL, created_at=T0 + i)


async def test_an_observer_sees_durable_batches_only_while_watching(store: Store) -> None:
    """1. No observer: writes land, nobody is told.  2. Watching: each batch's writes arrive
    once committed (a read then finds them).  3. watch(None): told nothing more."""
    seen: list[list[Sequence[Write]]] = []
    async with asyncio.timeout(10):
        await store.commit([w_run(_run(1, RunState.QUEUED))])
        store.watch(seen.append)
        await store.commit([w_run(_run(2, RunState.QUEUED))])
        store.post([w_run(_run(3, RunState.RUNNING)), w_run(_run(3, RunState.SUCCEEDED))])
        await store.commit([])
        told = [w.params[0] for batch in seen for writes in batch for w in writes]
        assert told == [f"{2:032x}", f"{3:032x}", f"{3:032x}"]
        for run_id in set(told):
            assert await store.run(run_id) is not None
        store.watch(None)
        count = len(seen)
        await store.commit([w_run(_run(4, RunState.QUEUED))])
        assert len(seen) == count


async def test_runs_window_and_recent_states(store: Store) -> None:
    """A state filter answers newest first; runs_window stops at its limit or its window and
    says where it stopped; recent_states gives each job's outcomes (not skips), newest first."""
    states = [RunState.SUCCEEDED, RunState.FAILED, RunState.SUCCEEDED, RunState.SKIPPED]
    async with asyncio.timeout(10):
        await store.commit([w_run(_run(i, states[i % 4], job=f"j{i % 2}")) for i in range(1, 41)])
        failed = await store.runs(RunQuery(state="failed", limit=3))
        assert [r.id for r in failed] == [f"{i:032x}" for i in (37, 33, 29)]
        found, cursor = await store.runs_window(RunQuery(state="failed", limit=3), scan=100)
        assert [r.id for r in found] == [f"{i:032x}" for i in (37, 33, 29)] and cursor is None
        found, cursor = await store.runs_window(RunQuery(state="failed", limit=50), scan=10)
        assert [r.id for r in found] == [f"{i:032x}" for i in (37, 33)]
        assert cursor == f"{31:032x}"  # the window was runs 40..31: go on below 31
        older = RunQuery(state="failed", limit=50, before=f"{3:032x}")
        found, cursor = await store.runs_window(older, scan=10)
        assert [r.id for r in found] == [f"{1:032x}"] and cursor is None  # nothing older left
        assert await store.recent_states(["j0", "j1", "none"], 3) == {
            "j0": ["succeeded", "succeeded", "succeeded"],
            "j1": ["failed", "failed", "failed"],  # (its skipped runs have no outcome)
            "none": [],
        }


async def test_events_below_an_id_and_by_exact_name(store: Store) -> None:
    """``before`` pages events newest first by id; a name without wildcards matches exactly."""
    names = ["a.x", "a.y", "a.x", "b.x", "a.x"]
    events = [
        Event(id=f"{i + 1:032x}", name=n, payload={"i": i}, created_at=T0 + i)
        for i, n in enumerate(names)
    ]
    async with asyncio.timeout(10):
        await store.commit([w_event(e) for e in events])
        page = await store.events(
            since=None, until=None, limit=2, newest_first=True, before=f"{5:032x}"
        )
        assert [e.id for e in page] == [f"{4:032x}", f"{3:032x}"]
        exact = await store.events(since=None, until=None, limit=10, newest_first=True, name="a.x")
        assert [e.id for e in exact] == [f"{i:032x}" for i in (5, 3, 1)]


async def test_dlq_summary_over_the_newest_entries(store: Store) -> None:
    """``newest=N`` groups only the N newest dead letters (the console's bound)."""

    def entry(i: int, job: str) -> DlqEntry:
        err = RunError(kind=ErrorKind.FATAL, message=f"boom {i}")
        return DlqEntry(
            id=f"{i:032x}", run_id=f"{i:032x}", job=job, target=None, target_idx=-1,
            error=err, failed_at=T0 + i,
        )  # fmt: skip

    async with asyncio.timeout(10):
        await store.commit([w_dlq(entry(i, "old" if i < 5 else "new")) for i in range(1, 9)])
        everything = await store.dlq_summary()
        assert {(g["job"], g["count"]) for g in everything} == {("old", 4), ("new", 4)}
        newest = await store.dlq_summary(newest=3)
        assert [(g["job"], g["count"]) for g in newest] == [("new", 3)]
        assert newest[0]["sample"].startswith("boom")
