"""The bounded worker pool: at most ``max_concurrency`` attempts in flight, all jobs together.

Rules:
- Waiters queue in a heap ordered by (-priority, arrival): higher priority first, FIFO within a
  priority.
- A released slot is handed straight to the head waiter (its future is resolved), so ``busy``
  never dips and no waiter can overtake another by racing for a freed slot.
- A cancelled waiter is skipped when it reaches the head. Nothing polls.
- ``close()`` (shutdown) fails every waiter and all later acquisitions with ``PoolClosed``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PoolClosed(Exception):
    """The pool stopped handing out slots (the daemon is draining)."""


class WorkerPool:
    def __init__(self, max_concurrency: int) -> None:
        self.max = max_concurrency
        self.busy = 0
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._closed = False

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._heap if not f.done())

    async def acquire(self, priority: int = 0) -> None:
        if self._closed:
            raise PoolClosed
        if self.busy < self.max and not self._heap:
            self.busy += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (-priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()  # we were handed a slot as we got cancelled: pass it on
            raise

    def try_acquire(self) -> bool:
        """A slot right now, or False; never waits (a run launched with its first attempt,
        engine/launcher.py)."""
        if self._closed or self.busy >= self.max or self._heap:
            return False
        self.busy += 1
        return True

    def release(self) -> None:
        while self._heap:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)
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
        while self._heap:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_exception(PoolClosed())
