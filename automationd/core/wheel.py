"""Hierarchical timing wheel over float deadlines (epoch seconds). Pure: the caller passes ``now``.

Theory of operation
-------------------
Time is cut into *ticks* of ``resolution`` seconds counted from ``origin`` (the ``now`` given to
the constructor or to ``rebase``): ``tick = floor((deadline - origin) / resolution)``. ``cur`` is
the tick the wheel has advanced to. A tick is a number written in base ``slots`` (256); level L
holds entries whose tick agrees with ``cur`` in every digit above L and differs at digit L, in
the slot named by that digit. Hence (the ordering invariant):

    every level-0 entry < every level-1 entry < ... < every overflow-heap entry

Entries whose tick differs from ``cur`` above the top level live in an overflow heap. Entries
already due when added (tick <= cur) go to cur's own level-0 slot.

- ``add`` is O(1): compute the level from the highest differing bit of ``tick ^ cur``.
- ``cancel`` is O(1) and lazy: the handle is marked dead and skipped later. When dead handles
  outnumber live ones (and exceed 1024) everything is compacted once, so memory stays bounded.
- ``pop_due(now)`` empties the level-0 slots up to ``tick(now)``; at the end of a level-0
  block it jumps ``cur`` straight to the start of the earliest occupied higher slot (found with
  the per-level occupancy bitmasks, never by stepping through empty ticks) and cascades that
  slot down; the overflow heap refills the wheel when ``cur`` enters its top-level block. The
  slot of ``tick(now)`` itself is split by exact comparison ``deadline <= now``. Output is
  sorted by deadline (ties keep insertion order within a slot).
- ``next_deadline()`` is exact and cheap: by the ordering invariant the earliest entry is in
  the lowest occupied slot of the lowest non-empty level (or the heap top), so it takes the min
  over one slot. The result is cached until a pop, or a cancel of the cached minimum.

Wall-clock jumps (the driver's job; deadlines are wall times):
- Forward jump: ``pop_due(now)`` returns everything now overdue in one call; the driver runs it
  through the misfire policy (``policy.plan_misfire``).
- Backward jump: entries stay correct (a 10:00 fire still fires at 10:00 wall time) but ``cur``
  is ahead of ``now``; call ``rebase(now)`` to re-origin the wheel so entries spread over slots
  again. Handles stay valid. If deadlines must be recomputed (e.g. a zone change),
  ``drain()`` returns every ``(deadline, item)`` and empties the wheel; re-add them.
"""

from __future__ import annotations

import math
from heapq import heapify, heappop, heappush
from operator import attrgetter
from typing import Generic, TypeVar

T = TypeVar("T")

_WHEEL, _HEAP, _DEAD = 0, 1, 2
_COMPACT_MIN = 1024
_by_deadline = attrgetter("deadline")


class Handle(Generic[T]):
    """What ``add`` returns; pass it to ``cancel``. Read-only for callers."""

    __slots__ = ("_where", "deadline", "item")

    def __init__(self, deadline: float, item: T) -> None:
        self.deadline = deadline
        self.item = item
        self._where = _WHEEL

    @property
    def active(self) -> bool:
        """True until the entry is popped, drained or cancelled."""
        return self._where != _DEAD

    def __lt__(self, other: Handle[T]) -> bool:  # heap order
        return self.deadline < other.deadline


class TimerWheel(Generic[T]):
    """Timers keyed by float deadlines: O(1) add/cancel, amortized cheap pop and peek."""

    def __init__(
        self, now: float, resolution: float = 0.001, slots: int = 256, levels: int = 4
    ) -> None:
        if slots < 2 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two >= 2, got {slots}")
        if levels < 1 or not resolution > 0:
            raise ValueError("levels must be >= 1 and resolution > 0")
        self._res = resolution
        self._bits = slots.bit_length() - 1
        self._mask = slots - 1
        self._levels = levels
        self._reset(now)

    def _reset(self, now: float) -> None:
        self._origin = now
        self._cur = 0
        size = self._mask + 1
        self._slots: list[list[list[Handle[T]] | None]] = [
            [None] * size for _ in range(self._levels)
        ]
        self._occ = [0] * self._levels
        self._heap: list[Handle[T]] = []
        self._live = 0
        self._dead = 0
        self._cached: float | None = None
        self._cache_ok = True

    def __len__(self) -> int:
        return self._live

    def _tick(self, t: float) -> int:
        return math.floor((t - self._origin) / self._res)

    def add(self, deadline: float, item: T) -> Handle[T]:
        """Schedule ``item`` at ``deadline`` (epoch seconds); past deadlines pop next time."""
        if not math.isfinite(deadline):
            raise ValueError(f"deadline must be finite, got {deadline!r}")
        h = Handle(deadline, item)
        self._place(h)
        self._live += 1
        if self._cache_ok and (self._cached is None or deadline < self._cached):
            self._cached = deadline
        return h

    def _place(self, h: Handle[T]) -> None:
        t = self._tick(h.deadline)
        cur = self._cur
        if t < cur:
            t = cur
        x = t ^ cur
        level = (x.bit_length() - 1) // self._bits if x else 0
        if level >= self._levels:
            h._where = _HEAP
            heappush(self._heap, h)
            return
        h._where = _WHEEL
        idx = (t >> (self._bits * level)) & self._mask
        row = self._slots[level]
        lst = row[idx]
        if lst is None:
            row[idx] = [h]
            self._occ[level] |= 1 << idx
        else:
            lst.append(h)

    def cancel(self, handle: Handle[T]) -> None:
        """Forget ``handle``; a no-op if it already fired, was drained or was cancelled."""
        if handle._where == _DEAD:
            return
        handle._where = _DEAD
        self._live -= 1
        self._dead += 1
        if self._cache_ok and self._cached is not None and handle.deadline <= self._cached:
            self._cache_ok = False
        if self._dead > _COMPACT_MIN and self._dead > self._live:
            self._compact()

    def _compact(self) -> None:
        for level, row in enumerate(self._slots):
            for idx, lst in enumerate(row):
                if lst is None:
                    continue
                keep = [h for h in lst if h._where == _WHEEL]
                row[idx] = keep or None
                if not keep:
                    self._occ[level] &= ~(1 << idx)
        self._heap = [h for h in self._heap if h._where == _HEAP]
        heapify(self._heap)
        self._dead = 0

    def _take(self, lst: list[Handle[T]], due: list[Handle[T]]) -> None:
        for h in lst:
            if h._where == _WHEEL:
                due.append(h)
            else:
                self._dead -= 1

    def pop_due(self, now: float) -> list[T]:
        """Remove and return the items with ``deadline <= now``, earliest first."""
        target = max(self._tick(now), self._cur)
        mask = self._mask
        row0 = self._slots[0]
        due: list[Handle[T]] = []
        while True:
            base = self._cur & ~mask
            last = target - base
            whole = last > mask  # the target lies beyond this level-0 block
            if whole:
                last = mask
            bits = self._occ[0] & ((2 << last) - 1)
            while bits:
                low = bits & -bits
                bits ^= low
                i = low.bit_length() - 1
                lst = row0[i]
                assert lst is not None
                if not whole and i == last:  # the target tick: split by exact deadline
                    keep = [h for h in lst if h._where == _WHEEL and h.deadline > now]
                    self._take([h for h in lst if h.deadline <= now or h._where != _WHEEL], due)
                    if keep:
                        row0[i] = keep
                        continue
                else:
                    self._take(lst, due)
                row0[i] = None
                self._occ[0] &= ~low
            if not whole:
                self._cur = target
                break
            start, level = self._next_start()
            if start < 0 or start > target:
                self._cur = target
                self._refill()
                break
            self._cur = start
            self._cascade(level)
        if due:
            due.sort(key=_by_deadline)
            for h in due:
                h._where = _DEAD
            self._live -= len(due)
            self._cache_ok = False
        return [h.item for h in due]

    def _next_start(self) -> tuple[int, int]:
        """(first tick of the earliest occupied slot above level 0, its level) or (-1, -1)."""
        bits_per = self._bits
        for level in range(1, self._levels):
            occ = self._occ[level]
            if occ:
                i = (occ & -occ).bit_length() - 1
                shift = bits_per * level
                above = self._cur >> (shift + bits_per) << (shift + bits_per)
                return above | (i << shift), level
        heap = self._heap
        while heap and heap[0]._where == _DEAD:
            heappop(heap)
            self._dead -= 1
        if heap:
            return max(self._tick(heap[0].deadline), self._cur), self._levels
        return -1, -1

    def _cascade(self, level: int) -> None:
        if level >= self._levels:
            self._refill()
            return
        idx = (self._cur >> (self._bits * level)) & self._mask
        row = self._slots[level]
        lst = row[idx]
        row[idx] = None
        self._occ[level] &= ~(1 << idx)
        for h in lst or ():
            if h._where == _WHEEL:
                self._place(h)
            else:
                self._dead -= 1

    def _refill(self) -> None:
        """Move heap entries whose top-level block ``cur`` has reached into the wheel."""
        shift = self._bits * self._levels
        top = self._cur >> shift
        heap = self._heap
        while heap:
            h = heap[0]
            if h._where == _DEAD:
                heappop(heap)
                self._dead -= 1
            elif self._tick(h.deadline) >> shift <= top:
                heappop(heap)
                self._place(h)
            else:
                break

    def next_deadline(self) -> float | None:
        """The exact earliest deadline, or None when empty."""
        if not self._cache_ok:
            self._cached = self._scan()
            self._cache_ok = True
        return self._cached

    def _scan(self) -> float | None:
        for level in range(self._levels):
            row = self._slots[level]
            bits = self._occ[level]
            while bits:
                low = bits & -bits
                bits ^= low
                i = low.bit_length() - 1
                lst = row[i]
                assert lst is not None
                live = [h for h in lst if h._where == _WHEEL]
                self._dead -= len(lst) - len(live)
                if live:
                    row[i] = live
                    return min(h.deadline for h in live)
                row[i] = None
                self._occ[level] &= ~low
        heap = self._heap
        while heap and heap[0]._where == _DEAD:
            heappop(heap)
            self._dead -= 1
        return heap[0].deadline if heap else None

    def _handles(self) -> list[Handle[T]]:
        out = [h for row in self._slots for lst in row if lst for h in lst if h._where == _WHEEL]
        out.extend(h for h in self._heap if h._where == _HEAP)
        out.sort(key=_by_deadline)
        return out

    def drain(self) -> list[tuple[float, T]]:
        """Remove everything; return ``(deadline, item)`` pairs, earliest first."""
        handles = self._handles()
        for h in handles:
            h._where = _DEAD
        self._reset(self._origin + self._cur * self._res)
        return [(h.deadline, h.item) for h in handles]

    def rebase(self, now: float) -> None:
        """Re-origin the wheel at ``now`` (after a backward wall-clock jump); handles stay valid."""
        handles = self._handles()
        self._reset(now)
        for h in handles:
            self._place(h)
        self._live = len(handles)
        self._cached = handles[0].deadline if handles else None
