"""FakeClock keeps the Clock protocol and moves only when told."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from automationd.clock import Clock
from tests.support.clock import DEFAULT_MONOTONIC, DEFAULT_WALL, FakeClock


def test_fake_clock_satisfies_the_protocol() -> None:
    """FakeClock can stand wherever a Clock is expected."""
    clock: Clock = FakeClock()
    assert clock.time() == DEFAULT_WALL
    assert clock.monotonic() == DEFAULT_MONOTONIC


def test_now_is_aware_utc_and_matches_time() -> None:
    """now() is an aware UTC datetime equal to time()."""
    clock = FakeClock(wall=1_800_000_000.25)
    now = clock.now()
    assert now.tzinfo == dt.UTC
    assert now.timestamp() == 1_800_000_000.25


@pytest.mark.parametrize("seconds", [-1.0, -0.001])
def test_advance_refuses_negative(seconds: float) -> None:
    """advance() with a negative amount raises and moves nothing."""
    clock = FakeClock()
    with pytest.raises(ValueError, match="seconds >= 0"):
        clock.advance(seconds)
    assert (clock.time(), clock.monotonic()) == (DEFAULT_WALL, DEFAULT_MONOTONIC)


@pytest.mark.parametrize(
    ("steps", "wall", "mono"),
    [
        ([("advance", 5.0)], DEFAULT_WALL + 5, DEFAULT_MONOTONIC + 5),
        ([("jump", 3600.0)], DEFAULT_WALL + 3600, DEFAULT_MONOTONIC),
        ([("jump", -3600.0)], DEFAULT_WALL - 3600, DEFAULT_MONOTONIC),
        ([("advance", 1.0), ("jump", -10.0), ("advance", 2.0)], DEFAULT_WALL - 7, 1003.0),
    ],
)
def test_advance_moves_both_and_jump_moves_wall_only(
    steps: list[tuple[str, float]], wall: float, mono: float
) -> None:
    """advance() moves wall and monotonic time; jump_wall() moves wall time alone."""
    clock = FakeClock()
    for op, amount in steps:
        if op == "advance":
            clock.advance(amount)
        else:
            clock.jump_wall(amount)
    assert (clock.time(), clock.monotonic()) == (wall, mono)


async def test_advance_wakes_only_sleepers_whose_deadline_passed() -> None:
    """1. Two tasks sleep until mono+5 and mono+10.
    2. advance(5) wakes the first; the second keeps sleeping; advance(5) wakes it.
    Result: sleepers wake in deadline order exactly when the clock reaches them."""
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append(name)

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("late", DEFAULT_MONOTONIC + 10))
        tg.create_task(sleeper("early", DEFAULT_MONOTONIC + 5))
        await asyncio.sleep(0)
        assert clock.sleepers == 2
        assert clock.next_wakeup() == DEFAULT_MONOTONIC + 5
        clock.advance(4.999)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(0.001)
        await asyncio.sleep(0)
        assert woke == ["early"]
        clock.advance(5)
    assert woke == ["early", "late"]


async def test_jump_wall_does_not_wake_sleepers() -> None:
    """A wall-clock jump leaves monotonic sleepers asleep."""
    clock = FakeClock()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(clock.sleep_until(DEFAULT_MONOTONIC + 1))
        await asyncio.sleep(0)
        clock.jump_wall(86400)
        await asyncio.sleep(0)
        assert not task.done()
        clock.advance(1)
    assert task.done()


async def test_sleep_until_past_deadline_returns_at_once() -> None:
    """Sleeping until a deadline already reached returns without advancing."""
    clock = FakeClock()
    async with asyncio.timeout(5):
        await clock.sleep_until(DEFAULT_MONOTONIC)
        await clock.sleep(0)
    assert clock.sleepers == 0


async def test_cancelled_sleeper_is_not_counted_or_woken() -> None:
    """A cancelled sleeper drops out of the count and advance() skips it."""
    clock = FakeClock()
    async with asyncio.timeout(5):
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(clock.sleep(10))
            await asyncio.sleep(0)
            task.cancel()
        assert clock.sleepers == 0
        assert clock.next_wakeup() is None
        clock.advance(10)
