"""Store contract: the retention steps (store/retention.py paces them): old finished runs go
with their targets, attempts and output; live runs and runs with dead letters stay; old
events go; each step is bounded by its batch and says whether more is left."""

from __future__ import annotations

import asyncio

from automationd.core.ids import IdGenerator, id_floor
from automationd.core.runstate import RunState, TargetState
from automationd.errors import ErrorKind
from automationd.records import Attempt, DlqEntry, Event, Phase, Run, RunError, Target, Trigger
from automationd.store.api import PrunePass, RunQuery, Store
from automationd.store.rows import w_attempt, w_dlq, w_dlq_delete, w_event, w_run, w_target
from automationd.store.write import Write

T0 = 1_780_000_000.0
CUT = T0 + 100  # runs and events created before this are old


def _run_writes(ids: IdGenerator, at: float, state: RunState, *, dead: bool = False) -> list[Write]:
    run = Run(
        id=ids.new(at),
        job="j",
        state=state,
        trigger=Trigger.MANUAL,
        created_at=at,
        attempts=1,
        targets_total=2,
    )
    writes = [w_run(run)]
    writes += [
        w_target(Target(run_id=run.id, idx=i, target=i, state=TargetState.SUCCEEDED))
        for i in range(2)
    ]
    attempt = Attempt(
        run_id=run.id,
        n=1,
        phase=Phase.PERFORM,
        target=0,
        target_idx=0,
        started_at=at,
        finished_at=at,
        outcome="ok",
    )
    writes.append(w_attempt(attempt, stdout="out", stderr="err"))
    if dead:
        entry = DlqEntry(
            id=f"dlq-{run.id}",
            run_id=run.id,
            job="j",
            target=None,
            target_idx=-1,
            error=RunError(kind=ErrorKind.FATAL, message="boom"),
            failed_at=at,
        )
        writes.append(w_dlq(entry))
    return writes


async def _ids_of_runs(store: Store) -> set[str]:
    return {r.id for r in await store.runs(RunQuery(limit=10_000))}


async def test_prune_runs_keeps_young_live_and_dead_lettered_runs(
    store: Store, ids: IdGenerator
) -> None:
    """1. Old finished runs (each with targets, an attempt and output), old live runs, an old
       run with a dead letter, young runs.
    2. Prune steps below the cut until none is left.
    Result: only the old finished runs are gone, with their targets, attempts and output;
    the rest stays whole, the dead letter included."""
    old_states = [RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.SKIPPED]
    writes: list[Write] = []
    for i, state in enumerate(old_states):
        writes += _run_writes(ids, T0 + i, state)
    live_at = T0 + 10
    for i, state in enumerate((RunState.QUEUED, RunState.RUNNING, RunState.RETRYING)):
        writes += _run_writes(ids, live_at + i, state)
    writes += _run_writes(ids, T0 + 20, RunState.PARTIAL, dead=True)
    writes += _run_writes(ids, CUT + 1, RunState.SUCCEEDED)
    async with asyncio.timeout(10):
        await store.commit(writes)
        everything = await _ids_of_runs(store)
        old = sorted(everything)[: len(old_states)]
        prune = PrunePass(before=id_floor(CUT))
        deleted, more, took = await store.prune_runs_step(prune, 100)
        assert (deleted, more) == (len(old_states), False) and took >= 0
        assert await _ids_of_runs(store) == everything - set(old)
        for run_id in old:
            assert await store.run(run_id) is None
            assert await store.target_rows(run_id) == []
            assert await store.attempts(run_id) == [] and await store.logs(run_id) == []
        for run_id in everything - set(old):
            assert len(await store.target_rows(run_id)) == 2
            assert len(await store.logs(run_id)) == 2
        assert await store.dlq_count() == 1
        assert len(await store.live_runs()) == 3


async def test_prune_runs_goes_in_bounded_steps(store: Store, ids: IdGenerator) -> None:
    """Each step deletes at most its batch and says whether more may be left; a pass's
    steps together delete every old finished run once."""
    writes: list[Write] = []
    for i in range(25):
        writes += _run_writes(ids, T0 + i, RunState.SUCCEEDED)
    async with asyncio.timeout(10):
        await store.commit(writes)
        prune = PrunePass(before=id_floor(CUT))
        steps: list[tuple[int, bool]] = []
        more = True
        while more:
            deleted, more, _ = await store.prune_runs_step(prune, 10)
            steps.append((deleted, more))
            assert len(steps) < 10
        assert sum(n for n, _ in steps) == 25
        assert all(n <= 10 for n, _ in steps) and steps[0] == (10, True)
        assert await _ids_of_runs(store) == set()


async def test_a_dead_lettered_run_is_pruned_once_its_letter_is_gone(
    store: Store, ids: IdGenerator
) -> None:
    """The DLQ keeps its run while it has an entry; once purged the run is pruned."""
    async with asyncio.timeout(10):
        await store.commit(_run_writes(ids, T0, RunState.FAILED, dead=True))
        assert (await store.prune_runs_step(PrunePass(before=id_floor(CUT)), 10))[0] == 0
        (entry,) = await store.dlq_select(id=None, job=None, all=True)
        await store.commit(w_dlq_delete([entry.id]))
        assert (await store.prune_runs_step(PrunePass(before=id_floor(CUT)), 10))[0] == 1
        assert await _ids_of_runs(store) == set()


async def test_prune_events_below_the_cut_in_steps(store: Store, ids: IdGenerator) -> None:
    """Events created before the cut go, at most a batch per step; younger ones stay."""
    old = [Event(id=ids.new(T0 + i), name="e", payload=None, created_at=T0 + i) for i in range(7)]
    young = Event(id=ids.new(CUT + 1), name="e", payload=None, created_at=CUT + 1)
    async with asyncio.timeout(10):
        await store.commit([w_event(e) for e in (*old, young)])
        assert (await store.prune_events_step(id_floor(CUT), 5))[:2] == (5, True)
        assert (await store.prune_events_step(id_floor(CUT), 5))[:2] == (2, False)
        assert await store.events(since=None, until=None, limit=None, newest_first=False) == [young]
