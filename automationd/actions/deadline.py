"""Attempt deadlines: one loop timer for many running attempts, not one each.

Why: ``asyncio.timeout()`` arms a loop timer per use (under uvloop a libuv timer: allocated,
put in its heap, stopped and freed again), about 5 to 10 µs: the largest single cost of a
python attempt that does little. Attempts are bounded by their job's timeout (minutes) and
nearly all end long before it, so their deadlines wait in one heap behind one timer, armed
for the earliest; an attempt that ends only marks its entry (dead entries are dropped when
they reach the top, or all at once when they outnumber the live ones).

The cancellation itself is asyncio's: the attempt runs inside an ``asyncio.Timeout`` made
without a deadline, and the keeper expires it with its public ``reschedule`` when the
deadline passes. So nesting, ``uncancel`` accounting, ``expired()`` and the ``TimeoutError``
are exactly ``asyncio.timeout``'s.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

_COMPACT_MIN = 1024  # dead entries tolerated before the heap is rebuilt


class Watch:
    """One attempt's deadline; ``done()`` when the attempt ended (before or at it)."""

    __slots__ = ("_keeper", "timer")

    def __init__(self, keeper: Deadlines, timer: asyncio.Timeout) -> None:
        self._keeper = keeper
        self.timer: asyncio.Timeout | None = timer

    def done(self) -> None:
        if self.timer is not None:
            self.timer = None
            self._keeper._ended()


class Deadlines:
    """Deadlines of attempts on one event loop (make it inside that loop)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._armed: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._live = 0
        self._dead = 0

    def running(self) -> bool:
        """Made on the loop that runs now (an action built once may outlive a loop)."""
        return asyncio.get_running_loop() is self._loop

    def watch(self, seconds: float, timer: asyncio.Timeout) -> Watch:
        """Expire ``timer`` (entered, with no deadline of its own) ``seconds`` from now."""
        when = self._loop.time() + seconds
        w = Watch(self, timer)
        heapq.heappush(self._heap, (when, next(self._seq), w))
        self._live += 1
        if self._armed is None or when < self._armed_at:
            self._arm(when)
        return w

    def _ended(self) -> None:
        self._live -= 1
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead > self._live:
            self._heap = [e for e in self._heap if e[2].timer is not None]
            heapq.heapify(self._heap)
            self._dead = 0

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed = self._loop.call_at(when, self._fire)
        self._armed_at = when

    def _fire(self) -> None:
        self._armed = None
        now = self._loop.time()
        heap = self._heap
        while heap and (heap[0][2].timer is None or heap[0][0] <= now):
            _, _, w = heapq.heappop(heap)
            timer = w.timer
            if timer is None:
                self._dead -= 1
                continue
            w.timer = None
            self._live -= 1
            if timer.when() is None:  # still entered, and nobody else gave it a deadline
                timer.reschedule(now)  # asyncio's own expiry: cancels the attempt's task
        if heap:
            self._arm(heap[0][0])
