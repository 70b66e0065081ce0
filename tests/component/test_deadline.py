"""Attempt deadlines kept by one timer (actions/deadline.py), on a real event loop."""

from __future__ import annotations

import asyncio

from automationd.actions import deadline
from automationd.actions.deadline import Deadlines


async def _guarded(keeper: Deadlines, seconds: float, work: float) -> str:
    timer = asyncio.timeout(None)
    try:
        async with timer:
            watch = keeper.watch(seconds, timer)
            try:
                await asyncio.sleep(work)
            finally:
                watch.done()
    except TimeoutError:
        return "timeout" if timer.expired() else "other"
    return "ok"


async def test_each_attempt_expires_at_its_own_deadline() -> None:
    """Attempts that outlive their deadline time out, in deadline order; the others finish."""
    async with asyncio.timeout(5):
        keeper = Deadlines()
        results = await asyncio.gather(
            _guarded(keeper, 0.05, 1.0),  # times out
            _guarded(keeper, 2.0, 0.01),  # finishes first, its entry is dropped
            _guarded(keeper, 0.1, 1.0),  # times out after the first
            _guarded(keeper, 3.0, 0.15),  # finishes after both timeouts
        )
    assert results == ["timeout", "ok", "timeout", "ok"]


async def test_a_later_earlier_deadline_rearms_the_timer() -> None:
    """A deadline earlier than the armed one moves the timer forward."""
    async with asyncio.timeout(5):
        keeper = Deadlines()
        async with asyncio.TaskGroup() as tg:
            slow = tg.create_task(_guarded(keeper, 30.0, 0.3))
            await asyncio.sleep(0)
            assert await _guarded(keeper, 0.05, 1.0) == "timeout"
        assert slow.result() == "ok"


async def test_finished_attempts_do_not_pile_up() -> None:
    """Entries of attempts that ended are compacted once they outnumber the live ones."""
    async with asyncio.timeout(5):
        keeper = Deadlines()
        for _ in range(deadline._COMPACT_MIN * 3):
            timer = asyncio.timeout(None)
            async with timer:
                keeper.watch(60.0, timer).done()
        assert len(keeper._heap) <= deadline._COMPACT_MIN + 1
        assert await _guarded(keeper, 0.02, 1.0) == "timeout"
