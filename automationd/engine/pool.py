"""The bounded worker pool: at most ``max_concurrency`` attempts in flight, all jobs together.

Rules:
- Waiters queue in a heap ordered by (-priority, arrival): higher priority first, FIFO within a
  priority.
- Two kinds of waiter share that one queue: a task awaiting ``acquire()``, and a
  ``Reservation`` (``reserve(priority, grant)``): a plain callback, for a run that has no
  task yet (the launcher opens its first attempt when the slot comes, and starts its task
  once that attempt is durable: engine/launcher.py). A reservation costs no task, no future
  and no wake-up while it waits.
- A released slot is handed straight to the head waiter (its future is resolved, or its
  ``grant(True)`` is called), so ``busy`` never dips and no waiter can overtake another by
  racing for a freed slot.
- A cancelled waiter is skipped when it reaches the head. Nothing polls.
- A grant may release a slot again, at once (the launcher's, for a run that may no longer
  open its attempt): that inner ``release()`` only counts the slot, and the outer one hands
  it on in its loop. Handing on is iterative, so a line of thousands of such reservations
  does not nest thousands of calls deep (it overflowed the stack).
- ``close()`` (shutdown) fails every waiter and all later acquisitions with ``PoolClosed``;
  a reservation hears ``grant(False)``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class PoolClosed(Exception):
    """The pool stopped handing out slots (the daemon is draining)."""


class Reservation:
    """A place in the queue that calls ``grant(True)`` with a slot held (``grant(False)`` if the
    pool closes first). ``cancel()`` gives the place up."""

    __slots__ = ("_grant", "settled")

    def __init__(self, grant: Callable[[bool], None]) -> None:
        self._grant = grant
        self.settled = False

    def cancel(self) -> bool:
        """Give up the place; False if the slot was already granted (or the pool closed)."""
        if self.settled:
            return False
        self.settled = True
        return True

    def _fire(self, granted: bool) -> None:
        self.settled = True
        self._grant(granted)


_Waiter = asyncio.Future[None] | Reservation


class WorkerPool:
    def __init__(self, max_concurrency: int) -> None:
        self.max = max_concurrency
        self.busy = 0
        self._heap: list[tuple[int, int, _Waiter]] = []
        self._seq = itertools.count()
        self._closed = False
        self._waiting = 0  # waiters not yet handed a slot nor cancelled (``status`` reads it)
        self._owed = 0  # slots released and not yet handed on (``release``)
        self._handing = False  # a ``release()`` is handing slots on (a grant's may not nest)

    @property
    def waiting(self) -> int:
        return self._waiting

    async def acquire(self, priority: int = 0) -> None:
        if self._closed:
            raise PoolClosed
        if self.busy < self.max and not self._waiting:
            self.busy += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (-priority, next(self._seq), fut))
        self._waiting += 1
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()  # we were handed a slot as we got cancelled: pass it on
            elif not self._closed:
                self._waiting -= 1  # left the queue without a slot
            raise

    def try_acquire(self) -> bool:
        """A slot right now, or False; never waits (a run launched with its first attempt,
        engine/launcher.py)."""
        if self._closed or self.busy >= self.max or self._waiting:
            return False
        self.busy += 1
        return True

    def reserve(self, priority: int, grant: Callable[[bool], None]) -> Reservation:
        """Queue ``grant`` for a slot: called with True once the slot is held (at once, if
        one is free and nobody waits), or with False if the pool closes first."""
        res = Reservation(grant)
        if self._closed:
            res._fire(False)
        elif self.busy < self.max and not self._waiting:
            self.busy += 1
            res._fire(True)
        else:
            heapq.heappush(self._heap, (-priority, next(self._seq), res))
            self._waiting += 1
        return res

    def withdraw(self, res: Reservation) -> bool:
        """Cancel a queued reservation; False if it was granted (or refused) already."""
        if not res.cancel():
            return False
        self._waiting -= 1
        return True

    def release(self) -> None:
        self._owed += 1
        if self._handing:
            return  # a grant releasing inside our loop: the loop below hands it on
        self._handing = True
        try:
            while self._owed:
                self._owed -= 1
                self._hand_on()
        finally:
            self._handing = False

    def _hand_on(self) -> None:
        """One released slot to the head waiter, or back to the free ones."""
        heap = self._heap
        while heap:
            waiter = heapq.heappop(heap)[2]
            if isinstance(waiter, Reservation):
                if waiter.settled:
                    continue
                self._waiting -= 1
                waiter._fire(True)
                return
            if not waiter.done():
                waiter.set_result(None)
                self._waiting -= 1
                return
        self.busy -= 1

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        self._closed = True
        self._waiting = 0
        while self._heap:
            waiter = heapq.heappop(self._heap)[2]
            if isinstance(waiter, Reservation):
                if not waiter.settled:
                    waiter._fire(False)
            elif not waiter.done():
                waiter.set_exception(PoolClosed())
