"""FakeClock: the ``automationd.clock.Clock`` protocol with time that moves only when told.

Wall time (``time()``/``now()``) and monotonic time move together on ``advance``; ``jump_wall``
moves wall time alone, like an NTP step or an operator setting the date. Sleepers wait on
monotonic deadlines, exactly as ``SystemClock.sleep_until`` does, so a wall jump never wakes
or stretches them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools

DEFAULT_WALL = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
DEFAULT_MONOTONIC = 1000.0


class FakeClock:
    """A manual clock for tests; ``advance`` wakes sleepers whose deadline has passed."""

    def __init__(self, wall: float = DEFAULT_WALL, monotonic: float = DEFAULT_MONOTONIC) -> None:
        self._wall = wall
        self._mono = monotonic
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._wall, dt.UTC)

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep_until(self, deadline: float) -> None:
        """Wait until ``monotonic() >= deadline``; returns at once (after a yield) if it is."""
        if deadline <= self._mono:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._mono + max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        """Move wall and monotonic time forward; negative values are refused."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance needs seconds >= 0, got {seconds}")
        self._wall += seconds
        self._mono += seconds
        self._wake()

    def jump_wall(self, seconds: float) -> None:
        """Step wall time by ``seconds`` (either sign); monotonic time and sleepers are unmoved."""
        self._wall += seconds

    def set_wall(self, wall: float) -> None:
        """Set wall time outright (epoch seconds)."""
        self._wall = wall

    @property
    def sleepers(self) -> int:
        """Sleepers still waiting (cancelled ones excluded)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def next_wakeup(self) -> float | None:
        """The earliest monotonic deadline anyone sleeps until, or None."""
        for deadline, _, fut in sorted(self._sleepers):
            if not fut.done():
                return deadline
        return None

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
