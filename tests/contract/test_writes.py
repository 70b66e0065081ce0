"""Store contract: the three ways to write (post, submit_then, commit), their order, the
collapse of one row's writes, failed batches and what is retried, and the health flags."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from automationd.core.runstate import RunState
from automationd.errors import ErrorKind, StoreError
from automationd.records import DlqEntry, Run, RunError, Trigger
from automationd.store.api import RunQuery, Store
from automationd.store.rows import w_dlq, w_dlq_delete, w_run
from tests.support.records import bad_write

T0 = 1_780_000_000.0


def _run(run_id: str, attempts: int = 0, state: RunState = RunState.QUEUED) -> Run:
    return Run(
        id=run_id,
        job="j",
        state=state,
        trigger=Trigger.MANUAL,
        created_at=T0,
        attempts=attempts,
    )


def _letter(entry_id: str) -> DlqEntry:
    return DlqEntry(
        id=entry_id,
        run_id="r",
        job="j",
        target=None,
        target_idx=-1,
        error=RunError(kind=ErrorKind.FATAL, message="x"),
        failed_at=T0,
    )


async def _until(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    """Wait for ``cond``, looking every 5 ms, for at most ``limit_s``."""
    for _ in range(int(limit_s / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def test_a_commit_is_durable_and_readable_on_return(store: Store) -> None:
    """What ``commit`` wrote is read back as soon as it returns; an empty commit returns
    once everything submitted before it is stored."""
    async with asyncio.timeout(5):
        assert store.healthy and store.health_reason is None
        await store.commit([w_run(_run("a"))])
        assert await store.run("a") == _run("a")
        store.post([w_run(_run("b"))])
        told: list[BaseException | None] = []
        store.submit_then([w_run(_run("c"))], told.append)
        await store.commit([])
        assert told == [None]
        assert [r.id for r in await store.runs(RunQuery())] == ["c", "b", "a"]


async def test_later_writes_of_a_row_win_in_submission_order(store: Store) -> None:
    """Many writes of one row, spread over the three verbs and over several loop turns
    and batches, leave the last one submitted."""
    async with asyncio.timeout(5):
        for n in range(1, 31):
            w = [w_run(_run("r", attempts=n))]
            if n % 3 == 0:
                store.post(w)
            elif n % 3 == 1:
                store.submit_then(w, lambda exc: None)
            else:
                await store.commit(w)
            if n % 7 == 0:
                await asyncio.sleep(0)
        await store.commit([])
        run = await store.run("r")
        assert run is not None and run.attempts == 30


async def test_writes_of_one_row_in_one_submission_collapse_to_the_last(store: Store) -> None:
    """Several writes of one row in one unit (and in one loop turn) store the last one."""
    async with asyncio.timeout(5):
        await store.commit([w_run(_run("r", attempts=n)) for n in (1, 2, 3)])
        await asyncio.gather(
            store.commit([w_run(_run("s", attempts=1))]),
            store.commit([w_run(_run("s", attempts=2)), w_run(_run("t"))]),
        )
        runs = {r.id: r.attempts for r in await store.runs(RunQuery())}
        assert runs == {"r": 3, "s": 2, "t": 0}


async def test_a_delete_keeps_its_place_among_writes(store: Store) -> None:
    """An entry written, deleted and written again in one unit exists; written then
    deleted, it does not (a delete is never reordered around the writes next to it)."""
    async with asyncio.timeout(5):
        await store.commit([w_dlq(_letter("x")), *w_dlq_delete(["x"]), w_dlq(_letter("y"))])
        await store.commit([*w_dlq_delete(["y"]), w_dlq(_letter("y"))])
        got = await store.dlq_select(id=None, job=None, all=True)
        assert [e.id for e in got] == ["y"]


async def test_a_failed_commit_raises_and_the_store_goes_on(store: Store) -> None:
    """A batch the backend refuses fails every ``commit`` in it with ``StoreError`` (and
    stores none of it); the next write succeeds and the store is healthy again."""
    async with asyncio.timeout(5):
        with capture_logs():
            results = await asyncio.gather(
                store.commit([w_run(_run("innocent"))]),
                store.commit([bad_write()]),
                return_exceptions=True,
            )
            assert isinstance(results[1], StoreError)
            await store.commit([w_run(_run("later"))])
        assert await store.run("later") is not None
        assert store.healthy and store.health_reason is None
        if isinstance(results[0], StoreError):  # it shared the failed batch: all or nothing
            assert await store.run("innocent") is None


async def test_posted_writes_land_even_when_their_batch_fails(store: Store) -> None:
    """1. In one loop turn: a refused write told through ``submit_then``, then posted
       writes of one row (and another row).
    2. The refused write's caller hears ``StoreError``; the store reports being unhealthy
       while its batch failed.
    Result: every posted write lands, in order (the row has its last value), and the store
    is healthy again with no reason given."""
    async with asyncio.timeout(5):
        told: list[BaseException | None] = []
        with capture_logs():
            store.submit_then([bad_write()], told.append)
            store.post([w_run(_run("r", attempts=1))])
            store.post([w_run(_run("r", attempts=2)), w_run(_run("s"))])
            await _until(lambda: bool(told))
            assert isinstance(told[0], StoreError)
            await store.wait_healthy()
            await store.commit([])
        r = await store.run("r")
        assert r is not None and r.attempts == 2
        assert await store.run("s") is not None
        assert store.healthy and store.health_reason is None


async def test_unhealthy_while_a_batch_fails_with_the_reason(store: Store) -> None:
    """After a failed batch the store is unhealthy with the error as its reason until a
    batch commits again (a health probe's included); ``wait_healthy`` returns then."""
    async with asyncio.timeout(5):
        with capture_logs(), pytest.raises(StoreError) as err:
            await store.commit([bad_write()])
        assert not store.healthy and store.health_reason == str(err.value)
        async with asyncio.TaskGroup() as tg:
            waiter = tg.create_task(store.wait_healthy())
            await store.commit([w_run(_run("ok"))])
        assert waiter.done()
        assert store.healthy and store.health_reason is None
