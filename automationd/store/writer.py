"""The store's single writer: group commit of many callers' writes into one transaction.

Theory of operation
===================

Why: a durable commit costs one fsync (``synchronous=FULL``), a few milliseconds on real disks.
One transaction per write caps the daemon at a few hundred writes/s; one transaction for
everything that is waiting turns the same fsync into thousands of durable writes/s.

Rules:

1. Callers never touch the connection. ``submit(writes)`` appends one *entry* (a caller's list
   of ``Write``s and one future) to ``pending`` and sets the wake event. It does not await, so
   everything a caller submits before its next ``await`` lands in the same batch.
2. There is exactly one writer task. It sleeps on an ``asyncio.Event`` (no polling, no linger
   timer); when woken it takes EVERYTHING pending (whole entries, up to ``max_batch`` writes;
   an entry is never split) and makes it one batch = one ``BEGIN IMMEDIATE … COMMIT``.
3. While a batch is in the connection thread, new submissions accumulate in ``pending`` and
   become the next batch as soon as the writer is back: that is the natural group commit.
4. Inside a batch, writes are cut into *segments* at every barrier (``Write.barrier=True`` or
   a ``call()`` function); a barrier is a segment of its own. Segments execute in order.
5. Inside a segment, writes are grouped by ``sql`` and each group runs as ONE ``executemany``,
   groups in the order of each sql's first appearance, rows within a group in submission
   order. So the order between DIFFERENT sql strings is not kept inside a segment; use a
   barrier when one statement must see another's effect (e.g. ``INSERT … SELECT``).
6. Writes with the same ``(sql, key)`` (key not None) inside one segment collapse to the LAST
   one, which takes the position of the last occurrence. The engine writes full-row upserts,
   so last-wins is what the table would hold anyway; collapse never crosses a barrier.
7. The whole batch runs in one hop to the connection thread (``execute_plan``). A caller's
   future resolves only after ``COMMIT`` returned, i.e. after the fsync: "resolved" means
   "durable". A read issued after that sees the write.
8. If anything in a batch fails, the transaction is rolled back and EVERY entry of the batch
   fails with a ``StoreError`` (group commit is all-or-nothing); the writer then goes on with
   the next batch. Writes therefore must not fail for expected reasons: use ``INSERT OR
   IGNORE`` / ``ON CONFLICT`` rather than relying on a constraint error.
9. A submitted write is never withdrawn: cancelling the task that awaits it does not remove it.
   Once a batch is in the thread its futures are settled when the thread finishes, even if the
   writer task itself is cancelled meanwhile.
10. If the connection thread is gone, a batch fails at once (never hangs); the health probe in
    ``db.py`` fails batches stuck in a thread that died.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import structlog

from automationd.clock import Clock
from automationd.errors import StoreError
from automationd.store.batch import Step, TxnFn, Write, execute_plan, plan_batch

__all__ = ["MAX_BATCH", "Step", "Then", "TxnFn", "Worker", "Write", "Writer"]

T = TypeVar("T")
Then = Callable[[BaseException | None], None]

log = structlog.get_logger("automationd.store")

MAX_BATCH = 5000
PIPELINE = 2  # batches handed to the connection thread at once


class Worker(Protocol):
    """Runs functions on a connection's own thread (``db._Worker`` over aiosqlite)."""

    @property
    def alive(self) -> bool: ...

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]: ...


class _Entry:
    """One caller's submission: its writes (or one function) and how to tell the caller: a
    future to settle, a ``then(error)`` callback, or neither (posted, fire-and-forget: a
    failure is logged by the batch)."""

    __slots__ = ("fn", "future", "then", "weight", "writes")

    def __init__(
        self,
        writes: Sequence[Write],
        fn: TxnFn | None,
        future: asyncio.Future[Any] | None,
        then: Then | None = None,
    ) -> None:
        self.writes = writes
        self.fn = fn
        self.future = future
        self.then = then
        self.weight = len(writes) if fn is None else 1  # for the batch cap and stats


class Writer:
    """Owns ``pending`` and the one task that commits it; see the theory of operation."""

    def __init__(self, worker: Worker, clock: Clock, *, max_batch: int = MAX_BATCH) -> None:
        self._worker = worker
        self._clock = clock
        self._max_batch = max_batch
        self._pending: deque[_Entry] = deque()
        self._pending_writes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.batches = 0
        self.writes = 0
        self.statements = 0
        self.collapsed = 0
        self.failed_batches = 0
        self.failed_writes = 0
        self.last_batch_size = 0
        self.max_batch_size = 0
        self.commit_seconds = 0.0
        self.last_commit_seconds = 0.0

    @property
    def pending(self) -> int:
        return self._pending_writes

    @property
    def drained(self) -> asyncio.Future[None]:
        """Resolves when the writer stopped after ``close()`` with nothing left pending."""
        return self._drained

    def submit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        return self._enqueue(_Entry(writes, None, asyncio.get_running_loop().create_future()))

    def post(self, writes: Sequence[Write]) -> None:
        """Like submit, for writes nobody waits for: no future is made (hot path)."""
        self._enqueue(_Entry(writes, None, None))

    def submit_then(self, writes: Sequence[Write], then: Then) -> None:
        """Like submit, but ``then(None)`` (durable) or ``then(error)`` is called straight from
        the batch's settlement: no future, no scheduled callback (the engine's hot path)."""
        self._enqueue(_Entry(writes, None, None, then))

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        return self._enqueue(_Entry((), fn, asyncio.get_running_loop().create_future()))

    def _enqueue(self, entry: _Entry) -> asyncio.Future[Any]:
        if self._closing:
            raise StoreError("the store is closed; write not accepted")
        self._pending.append(entry)
        self._pending_writes += entry.weight
        self._wake.set()
        return entry.future  # type: ignore[return-value]

    def close(self) -> None:
        """Refuse new writes; the running writer commits what is pending, then stops."""
        self._closing = True
        self._wake.set()

    def fail_pending(self, reason: str) -> int:
        """Fail everything not yet handed to the thread (used when a flush timed out)."""
        count = 0
        while self._pending:
            entry = self._pending.popleft()
            count += entry.weight
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(StoreError(reason))
            elif entry.then is not None:
                _call_then(entry.then, StoreError(reason))
        self._pending_writes = 0
        return count

    async def run(self) -> None:
        """The writer task's body: wait, take everything pending, commit, repeat.

        Up to ``PIPELINE`` batches are handed to the connection thread at once (it runs them
        one after another, each its own transaction), so the thread starts the next commit
        while the event loop is still busy settling the previous one's callers.
        """
        inflight: deque[tuple[list[_Entry], asyncio.Future[Any], float, int, int]] = deque()
        try:
            while True:
                if self._pending and len(inflight) < PIPELINE:
                    batch = self._take()
                    started = self._clock.monotonic()
                    try:
                        steps, statements, collapsed = plan_batch(batch)
                        done = self._worker.call(partial(execute_plan, steps=steps))
                    except Exception as exc:  # an unhashable key, or the thread is gone
                        self._settle(batch, exc, [], started)
                        continue
                    inflight.append((batch, done, started, statements, collapsed))
                    continue
                if inflight:
                    batch, done, started, statements, collapsed = inflight[0]
                    try:
                        results = await asyncio.shield(done)
                    except asyncio.CancelledError:
                        # Rule 9: the thread still finishes these; settle callers when it does.
                        for b, d, st, _, _ in inflight:
                            d.add_done_callback(partial(self._settle_later, b, st))
                        inflight.clear()
                        raise
                    except Exception as exc:
                        inflight.popleft()
                        self._settle(batch, exc, [], started)
                        continue
                    inflight.popleft()
                    self.statements += statements
                    self.collapsed += collapsed
                    self._settle(batch, None, results, started)
                    continue
                if self._closing:
                    break
                self._wake.clear()
                await self._wake.wait()
        finally:
            # Normally nothing is left; if we were cancelled, nobody may wait forever.
            self._closing = True
            self.fail_pending("the store's writer stopped before this write committed")
            if not self._drained.done():
                self._drained.set_result(None)

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        taken = 0
        pending = self._pending
        while pending and (not batch or taken + pending[0].weight <= self._max_batch):
            entry = pending.popleft()
            taken += entry.weight
            batch.append(entry)
        self._pending_writes -= taken
        return batch

    def _settle_later(self, batch: list[_Entry], started: float, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            self._settle(batch, StoreError("batch abandoned"), [], started)
        elif (exc := done.exception()) is not None:
            self._settle(batch, exc, [], started)
        else:
            self._settle(batch, None, done.result(), started)

    def _settle(
        self, batch: list[_Entry], exc: BaseException | None, results: list[Any], started: float
    ) -> None:
        size = sum(e.weight for e in batch)
        elapsed = self._clock.monotonic() - started
        self.batches += 1
        self.last_batch_size = size
        self.max_batch_size = max(self.max_batch_size, size)
        self.last_commit_seconds = elapsed
        self.commit_seconds += elapsed
        if exc is None:
            self.writes += size
            fn_results = iter(results)
            for entry in batch:
                value = next(fn_results) if entry.fn is not None else None
                fut = entry.future
                if fut is not None:
                    if not fut.done():
                        fut.set_result(value)
                elif entry.then is not None:
                    _call_then(entry.then, None)
            return
        self.failed_batches += 1
        self.failed_writes += size
        message = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
        log.error("store.batch_failed", error=message, writes=size, entries=len(batch))
        for entry in batch:
            if entry.future is None and entry.then is None:
                continue
            err = StoreError(f"write batch failed: {message}")
            err.__cause__ = exc
            if entry.future is not None:
                if not entry.future.done():
                    entry.future.set_exception(err)
            elif entry.then is not None:
                _call_then(entry.then, err)


def _call_then(then: Then, exc: BaseException | None) -> None:
    """One caller's callback failing must not keep the rest of its batch from being told."""
    try:
        then(exc)
    except Exception:
        log.exception("store.callback_failed", callback=getattr(then, "__qualname__", "?"))
