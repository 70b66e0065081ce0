"""Store contract: runs (create, update, by key, listing and paging, live runs for recovery),
their targets (implicit and explicit) and the uniqueness of idempotency keys."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from automationd.core.ids import IdGenerator
from automationd.core.runstate import RunState, TargetState
from automationd.errors import ErrorKind, StoreError
from automationd.records import Attempt, Phase, Run, RunError, Target, Trigger
from automationd.store.ahead_rows import w_attempts_started, w_run_delete, w_runs_started
from automationd.store.api import RunQuery, Store
from automationd.store.rows import w_attempt, w_run, w_target

T0 = 1_780_000_000.0


def _run(ids: IdGenerator, at: float, **kw: object) -> Run:
    fields: dict[str, object] = {"job": "j", "state": RunState.QUEUED, "trigger": Trigger.MANUAL}
    fields.update(kw)
    return Run(id=ids.new(at), created_at=at, **fields)  # type: ignore[arg-type]


async def test_a_run_reads_back_as_written(store: Store, ids: IdGenerator) -> None:
    """Every field of a run survives the round trip; an unknown id reads as None."""
    run = _run(
        ids,
        T0,
        state=RunState.FAILED,
        trigger=Trigger.EVENT,
        scheduled_for=T0 - 0.5,
        started_at=T0 + 0.25,
        finished_at=T0 + 1.125,
        attempts=3,
        idempotency_key="k-1",
        payload={"a": [1, 2.5, None, "é"], "b": {"c": True}},
        targets_total=2,
        targets_succeeded=1,
        targets_failed=1,
        error=RunError(kind=ErrorKind.RATE_LIMITED, message="slow down"),
        result=[1, "x"],
        depth=2,
        origin="e-1",
        reason="why",
        lease=7,
    )
    async with asyncio.timeout(5):
        await store.commit([w_run(run)])
        assert await store.run(run.id) == run
        assert await store.run("no-such-run") is None


async def test_a_later_write_updates_what_changes(store: Store, ids: IdGenerator) -> None:
    """Writing a run again updates its state, times, counts, error and result; what was fixed
    at creation (job, trigger, created_at, key, depth, origin) stays."""
    run = _run(ids, T0, idempotency_key="k", depth=1, origin="o", payload={"p": 1})
    ended = replace(
        run,
        state=RunState.SUCCEEDED,
        started_at=T0 + 1,
        finished_at=T0 + 2,
        attempts=1,
        targets_total=1,
        targets_succeeded=1,
        result={"ok": True},
        payload={"p": 2},
    )
    async with asyncio.timeout(5):
        await store.commit([w_run(run)])
        await store.commit([w_run(ended)])
        assert await store.run(run.id) == ended
        assert await store.run_by_key("j", "k") == ended


async def test_run_by_key_is_scoped_per_job(store: Store, ids: IdGenerator) -> None:
    """A key finds its job's run only."""
    a = _run(ids, T0, job="a", idempotency_key="same")
    b = _run(ids, T0 + 1, job="b", idempotency_key="same")
    async with asyncio.timeout(5):
        await store.commit([w_run(a), w_run(b)])
        assert await store.run_by_key("a", "same") == a
        assert await store.run_by_key("b", "same") == b
        assert await store.run_by_key("c", "same") is None
        assert await store.run_by_key("a", "other") is None


async def test_a_second_run_with_a_known_key_is_refused(store: Store, ids: IdGenerator) -> None:
    """Two runs of one job with one idempotency key cannot both be stored: the second
    commit fails and the first run stays; runs without a key never collide."""
    first = _run(ids, T0, idempotency_key="k")
    async with asyncio.timeout(5):
        await store.commit([w_run(first)])
        with pytest.raises(StoreError):
            await store.commit([w_run(_run(ids, T0 + 1, idempotency_key="k"))])
        assert await store.run_by_key("j", "k") == first
        keyless = [_run(ids, T0 + 2 + i) for i in range(3)]
        await store.commit([w_run(r) for r in keyless])
        assert len(await store.runs(RunQuery(job="j"))) == 4


async def test_runs_are_listed_newest_first_with_filters(store: Store, ids: IdGenerator) -> None:
    """``runs`` filters by job, state, trigger and a created-at window (whole milliseconds,
    both ends included), newest first, up to ``limit``."""
    a1 = _run(ids, T0 + 1, job="a")
    b2 = _run(ids, T0 + 2, job="b", state=RunState.SUCCEEDED)
    a3 = _run(ids, T0 + 3, job="a", state=RunState.SUCCEEDED, trigger=Trigger.SCHEDULE)
    a4 = _run(ids, T0 + 4.0015, job="a", state=RunState.FAILED)
    async with asyncio.timeout(5):
        await store.commit([w_run(r) for r in (a1, b2, a3, a4)])

        async def listed(**kw: object) -> list[str]:
            return [r.id for r in await store.runs(RunQuery(**kw))]  # type: ignore[arg-type]

        assert await listed() == [a4.id, a3.id, b2.id, a1.id]
        assert await listed(limit=2) == [a4.id, a3.id]
        assert await listed(job="a") == [a4.id, a3.id, a1.id]
        assert await listed(state="succeeded") == [a3.id, b2.id]
        assert await listed(job="a", state="succeeded") == [a3.id]
        assert await listed(trigger="schedule") == [a3.id]
        assert await listed(since=T0 + 2, until=T0 + 3) == [a3.id, b2.id]
        assert await listed(since=T0 + 4) == [a4.id]
        assert await listed(until=T0 + 4) == [a3.id, b2.id, a1.id]
        assert await listed(since=T0 + 4.001, until=T0 + 4.001) == [a4.id]  # its millisecond
        assert await listed(job="nobody") == []


async def test_runs_page_by_keyset_and_by_offset(store: Store, ids: IdGenerator) -> None:
    """``before`` (an id: only older runs) and ``offset`` walk the same newest-first order."""
    runs = [_run(ids, T0 + i) for i in range(7)]
    async with asyncio.timeout(5):
        await store.commit([w_run(r) for r in runs])
        newest_first = [r.id for r in reversed(runs)]
        pages: list[str] = []
        before = None
        while True:
            page = await store.runs(RunQuery(before=before, limit=3))
            if not page:
                break
            pages += [r.id for r in page]
            before = page[-1].id
        assert pages == newest_first
        by_offset = [
            r.id for off in (0, 3, 6) for r in await store.runs(RunQuery(limit=3, offset=off))
        ]
        assert by_offset == newest_first
        page = await store.runs(RunQuery(job="j", before=runs[4].id, limit=2, offset=1))
        assert [r.id for r in page] == [runs[2].id, runs[1].id]


async def test_live_runs_are_the_unfinished_ones_oldest_first(
    store: Store, ids: IdGenerator
) -> None:
    """Recovery reads every queued, running or retrying run, oldest first, and no other."""
    states = [
        RunState.RUNNING,
        RunState.SUCCEEDED,
        RunState.QUEUED,
        RunState.FAILED,
        RunState.RETRYING,
        RunState.CANCELLED,
        RunState.SKIPPED,
        RunState.PARTIAL,
    ]
    runs = [_run(ids, T0 + i, state=s) for i, s in enumerate(states)]
    async with asyncio.timeout(5):
        assert await store.live_runs() == []
        await store.commit([w_run(r) for r in reversed(runs)])
        live = await store.live_runs()
        assert [r.id for r in live] == [runs[0].id, runs[2].id, runs[4].id]
        await store.commit([w_run(replace(runs[0], state=RunState.SUCCEEDED))])
        assert [r.id for r in await store.live_runs()] == [runs[2].id, runs[4].id]


async def test_explicit_targets_read_back_in_order(store: Store, ids: IdGenerator) -> None:
    """A fan-out run's stored targets come back by index, updates applied; ``targets`` of
    such a run are exactly its rows."""
    run = _run(ids, T0, targets_total=3)
    rows = [Target(run_id=run.id, idx=i, target={"sku": i}) for i in (2, 0, 1)]
    done = replace(
        rows[1],
        state=TargetState.FAILED,
        attempts=2,
        error=RunError(kind=ErrorKind.FATAL, message="gone"),
    )
    async with asyncio.timeout(5):
        await store.commit([w_run(run), *(w_target(t) for t in rows)])
        await store.commit([w_target(done)])
        stored = await store.target_rows(run.id)
        assert [t.idx for t in stored] == [0, 1, 2]
        assert stored[0] == done and stored[1] == rows[2] and stored[2] == rows[0]
        assert await store.targets(run) == stored
        assert await store.target_rows("no-such-run") == []


@pytest.mark.parametrize(
    ("state", "failed", "target_state"),
    [
        (RunState.QUEUED, 0, TargetState.PENDING),
        (RunState.RUNNING, 0, TargetState.PENDING),
        (RunState.SUCCEEDED, 0, TargetState.SUCCEEDED),
        (RunState.FAILED, 1, TargetState.FAILED),
        (RunState.CANCELLED, 0, TargetState.PENDING),
    ],
)
async def test_the_implicit_target_is_derived_from_the_run(
    store: Store, ids: IdGenerator, state: RunState, failed: int, target_state: TargetState
) -> None:
    """A run with one target and no target rows has one implicit target: its state from the
    run's, its attempts counted from the perform attempts, its error or result the run's."""
    err = RunError(kind=ErrorKind.TIMEOUT, message="late") if failed else None
    result = "value" if state is RunState.SUCCEEDED else None
    run = _run(
        ids, T0, state=state, targets_total=1, targets_failed=failed, error=err, result=result
    )
    tries = [
        Attempt(run_id=run.id, n=n, phase=ph, target=None, target_idx=-1, started_at=T0)
        for n, ph in ((1, Phase.CHECK), (2, Phase.PERFORM), (3, Phase.PERFORM))
    ]
    async with asyncio.timeout(5):
        await store.commit([w_run(run), *(w_attempt(a) for a in tries)])
        assert await store.target_rows(run.id) == []
        (target,) = await store.targets(run)
        assert (target.run_id, target.idx, target.target) == (run.id, 0, None)
        assert (target.state, target.attempts) == (target_state, 2)
        assert target.error == err and target.result == result


async def test_a_run_without_targets_yet_has_none(store: Store, ids: IdGenerator) -> None:
    """A run whose check has not decided its targets (``targets_total`` 0) lists none."""
    run = _run(ids, T0, targets_total=0)
    async with asyncio.timeout(5):
        await store.commit([w_run(run)])
        assert await store.targets(run) == []


async def test_a_run_that_never_started_can_be_deleted(store: Store, ids: IdGenerator) -> None:
    """``w_run_delete`` forgets a queued run that never started (a run made ahead of its
    fire, engine/ahead.py) and keeps one that started, whatever it is asked; a new run for
    the same fire may follow it (in a later unit: PostgreSQL makes no runs ahead, and creates
    a unit's runs before its other writes)."""
    made = _run(ids, T0, trigger=Trigger.SCHEDULE, scheduled_for=T0 + 1, reason="ahead")
    started = _run(ids, T0, state=RunState.RUNNING, attempts=1, started_at=T0 + 0.1)
    again = _run(ids, T0 + 0.5, trigger=Trigger.SCHEDULE, scheduled_for=T0 + 1)
    async with asyncio.timeout(5):
        await store.commit([w_run(made), w_run(started)])
        await store.commit([w_run_delete(made.id), w_run_delete(started.id)])
        await store.commit([w_run(again)])
        assert await store.run(made.id) is None
        assert await store.run(started.id) == started
        assert await store.run(again.id) == again


async def test_a_unit_of_made_runs_starts_as_one_write(store: Store, ids: IdGenerator) -> None:
    """``w_runs_started`` and ``w_attempts_started`` say of many runs made ahead what a full
    run row and an attempt start row would: running, attempt 1 open since that instant, the
    mark cleared; a run not named stays as it was."""
    made = [
        _run(ids, T0, job=f"j{i}", trigger=Trigger.SCHEDULE, scheduled_for=T0 + 1, reason="a")
        for i in range(3)
    ]
    other = made.pop()
    started = T0 + 1.001
    async with asyncio.timeout(5):
        await store.commit([w_run(r) for r in [*made, other]])
        names = [r.id for r in made]
        await store.commit(
            [w_runs_started(names, started, 0), w_attempts_started(names, "perform", 0, started)]
        )
        for r in made:
            got = await store.run(r.id)
            assert got == replace(
                r, state=RunState.RUNNING, started_at=started, attempts=1, reason=None
            )
            [open_one] = await store.open_attempts(r.id)
            assert open_one.n == 1
            [attempt] = await store.attempts(r.id)
            assert (attempt.phase, attempt.target_idx, attempt.target) == (Phase.PERFORM, 0, None)
            assert (attempt.started_at, attempt.outcome) == (started, None)
        assert await store.run(other.id) == other
