"""The worker pool's two kinds of waiter, tasks and reservations, on a real event loop."""

from __future__ import annotations

import asyncio

import pytest

from automationd.engine.pool import PoolClosed, WorkerPool


async def test_reservation_granted_at_once_when_a_slot_is_free() -> None:
    """A reservation made with a free slot and nobody waiting is granted on the spot."""
    pool = WorkerPool(1)
    got: list[bool] = []
    pool.reserve(0, got.append)
    assert got == [True] and pool.busy == 1 and pool.waiting == 0


async def test_slots_go_to_tasks_and_reservations_by_priority_then_arrival() -> None:
    """Released slots are handed over in (priority, arrival) order, whatever the waiter."""
    async with asyncio.timeout(5):
        pool = WorkerPool(1)
        await pool.acquire()
        order: list[str] = []

        async def task(name: str, priority: int) -> None:
            await pool.acquire(priority)
            order.append(name)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(task("task-low", 0))
            await asyncio.sleep(0)
            pool.reserve(5, lambda ok: order.append(f"res-high:{ok}"))
            pool.reserve(0, lambda ok: order.append(f"res-low:{ok}"))
            tg.create_task(task("task-high", 5))
            await asyncio.sleep(0)
            assert pool.waiting == 4
            for _ in range(4):
                pool.release()
                await asyncio.sleep(0)
        assert order == ["res-high:True", "task-high", "task-low", "res-low:True"]
        assert pool.busy == 1 and pool.waiting == 0


async def test_a_withdrawn_reservation_is_skipped() -> None:
    """A withdrawn reservation never hears back, and its place goes to the next waiter."""
    pool = WorkerPool(1)
    pool.reserve(0, lambda ok: None)
    heard: list[str] = []
    first = pool.reserve(0, lambda ok: heard.append("first"))
    pool.reserve(0, lambda ok: heard.append("second"))
    assert pool.withdraw(first) and pool.waiting == 1
    pool.release()
    assert heard == ["second"]
    assert not pool.withdraw(first)  # once is enough


async def test_close_refuses_reservations_and_fails_tasks() -> None:
    """Closing tells waiting reservations False, fails waiting tasks, refuses new ones."""
    async with asyncio.timeout(5):
        pool = WorkerPool(1)
        await pool.acquire()
        heard: list[bool] = []
        pool.reserve(0, heard.append)

        async def waiter() -> str:
            try:
                await pool.acquire()
            except PoolClosed:
                return "closed"
            return "granted"

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(waiter())
            await asyncio.sleep(0)
            pool.close()
        assert task.result() == "closed"
        assert heard == [False] and pool.waiting == 0
        with pytest.raises(PoolClosed):
            await pool.acquire()
        pool.reserve(0, heard.append)
        assert heard == [False, False]


async def test_grants_that_release_at_once_do_not_nest() -> None:
    """A line of 5,000 reservations whose grant gives the slot straight back (the launcher's,
    for a run that may no longer open its attempt) is handed on in one loop, in order, with
    no recursion: the slot ends free and nobody waits."""
    pool = WorkerPool(1)
    assert pool.try_acquire()
    order: list[int] = []

    def giving_back(n: int, granted: bool) -> None:
        assert granted
        order.append(n)
        pool.release()

    for n in range(5000):
        pool.reserve(0, lambda ok, n=n: giving_back(n, ok))
    pool.release()
    assert order == list(range(5000))
    assert pool.busy == 0 and pool.waiting == 0
