"""The store's single writer: group commit of many callers' writes into one transaction.

Theory of operation
===================

Why: a durable commit costs one fsync, a few hundred microseconds to milliseconds. One
transaction per write caps the daemon at a few thousand writes/s; one transaction for
everything that is waiting turns the same fsync into tens of thousands of durable writes/s.

Rules:

1. Callers never touch the connection. A submission appends one *entry* (a caller's list of
   ``Write``s, or one function) to ``pending`` and schedules a kick for the end of the loop
   turn; it does not await, so everything submitted in one turn lands in the same batch.
   A *deferrable* entry (``post``, ``submit_then(…, defer=True)``: nobody waits for it, e.g.
   a run's end) kicks nothing: it rides with the next entry someone waits for, or goes after
   ``DEFER`` s or once ``DEFER_WRITES`` wait (a synchronous client's next trigger then shares
   the previous run's end's commit: one fsync per run, not two). Order is unchanged.
2. A kick takes EVERYTHING pending (whole entries, up to ``max_batch`` writes; an entry is
   never split) and hands it to the backend's ``Committer`` as one batch = one transaction.
   One batch (``PIPELINE``) is in the committer at a time; new entries become the next one:
   the natural group commit (a second batch in flight only waited for the same thread). A
   batch's completion settles its callers and kicks the next batch at the end of that turn,
   once the runs it started took a step, so their workers' next attempts ride along. An
   idle writer starts a batch at once when ``EARLY_WRITES`` wait, and batches stop at
   ``MAX_BATCH``: a herd (2,000 runs in one turn) is durable in pieces, its first runs early.
3. Inside a batch, writes are cut into *segments* at every barrier (``Write.barrier`` or a
   function); segments execute in order. Inside a segment writes are grouped by statement,
   each group one multi-row statement, groups in order of first appearance (store/batch.py).
   Use a barrier when one statement must see another's effect.
4. Writes with the same ``(stmt, key)`` inside one segment collapse to the LAST one: rows are
   written as full-row upserts, so last-wins is what the table would hold anyway.
5. "Settled" means durable: a caller is told only after COMMIT returned.
6. A failed batch is rolled back whole (group commit is all-or-nothing). Its entries that
   must land (``post``, and ``submit_then(…, retry=True)``) are *held*: no new batch starts
   until a retry timer (50 ms, doubling to 2 s while it keeps failing) puts them back at the
   head of ``pending``, so submission order is kept across the failure. A held write whose
   row a batch already in the committer stored meanwhile is dropped (that row is newer). The
   other entries (``commit`` futures, ``submit_then`` without retry) fail at once with the
   ``StoreError``, whose ``kind`` says why; while held entries wait, new ones of that sort
   fail at once with it too, not after the retry timer (the held writes probe recovery).
7. Failure is logged once per episode (``store.write_failed`` with the kind), then once a
   minute while it lasts (``store.still_failing`` with a count), and once when writes have
   committed again for ``quiet_after`` (``store.write_recovered``); never once per request.
   Health follows at once (a batch with writes commits; an empty probe proves nothing), but
   the episode ends only after the quiet spell: a nearly full disk's flapping is one episode.
8. A submitted write is never withdrawn. ``close()`` refuses new writes; ``drained``
   resolves once nothing is pending, held or in the committer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

import structlog

from automationd.clock import Clock
from automationd.errors import StoreError
from automationd.store.batch import Settlement, Step, TxnFn, keys_of, plan_batch
from automationd.store.entry import Entry, call_then, tell
from automationd.store.write import Observer, Then, Write

log = structlog.get_logger("automationd.store")

MAX_BATCH = 1000
PIPELINE = 1  # batches in the committer at once (rule 2)
DEFER, DEFER_WRITES = 0.002, 256  # a deferrable entry waits s for company, or writes (rule 1)
EARLY_WRITES = 256  # an idle writer starts a batch this big at once, mid-turn (rule 2)
RETRY_FIRST, RETRY_MAX = 0.05, 2.0  # seconds before held writes are tried again
STILL_FAILING_EVERY = 60.0
QUIET_AFTER = 5.0  # the daemon's seconds of committing writes before an episode is over


class Committer(Protocol):
    """Runs one batch's steps as one transaction (the backend's connection and thread).

    A committer may instead offer ``start_entries(entries) -> Future[Settlement]``: it then
    plans the batch itself and may refuse whole entries (store/pg/committer.py: fencing)."""

    def start(self, steps: Sequence[Step]) -> asyncio.Future[list[Any]]:
        """Begin the transaction; the future gives the functions' results, in step order, or
        raises ``StoreError`` (with its kind) after a rollback."""


class Writer:
    """Owns ``pending`` and the batches in the committer; see the theory of operation."""

    def __init__(
        self,
        committer: Committer,
        clock: Clock,
        *,
        max_batch: int = MAX_BATCH,
        on_error: Callable[[str], None] | None = None,
        on_health: Callable[[], None] | None = None,
        quiet_after: float = 0.0,
    ) -> None:
        self._committer = committer
        self._quiet_after = quiet_after
        self._by_entry: Callable[[list[Entry]], asyncio.Future[Any]] | None = getattr(
            committer, "start_entries", None
        )
        self._on_health = on_health
        self._clock = clock
        self._max_batch = max_batch
        self._on_error = on_error
        self._loop = asyncio.get_running_loop()
        self._pending: deque[Entry] = deque()
        self._pending_writes = 0
        self._inflight: deque[list[Entry]] = deque()
        self._held: list[Entry] = []
        self._kicked = False
        self._urgent = 0  # entries in ``pending`` that someone waits for (rule 1)
        self._defer_timer: asyncio.TimerHandle | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_delay = RETRY_FIRST
        self._closing = False
        self._drained: asyncio.Future[None] = self._loop.create_future()
        self.failing: str | None = None  # the kind, while batches fail
        self.episode = False  # from the first failure until writes committed for QUIET_AFTER
        self._quiet: asyncio.TimerHandle | None = None
        self.last_error: str | None = None
        self._failure: StoreError | None = None  # the last batch failure, while failing
        self._failed_since = 0.0
        self._failed_count = 0
        self._told = 0.0
        self.batches = self.writes = self.statements = self.collapsed = 0
        self.failed_batches = self.failed_writes = 0
        self.last_batch_size = self.max_batch_size = 0
        self.commit_seconds = self.last_commit_seconds = 0.0
        self.observer: Observer | None = None  # Store.watch: told each durable batch

    # -- submitting -----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending_writes

    @property
    def drained(self) -> asyncio.Future[None]:
        return self._drained

    def post(self, writes: Sequence[Write]) -> None:
        self._enqueue(Entry(writes, retry=True, defer=True))

    def submit_then(
        self, writes: Sequence[Write], then: Then, *, retry: bool = False, defer: bool = False
    ) -> None:
        self._enqueue(Entry(writes, then=then, retry=retry, defer=defer))

    def submit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self._loop.create_future()
        self._enqueue(Entry(writes, future=fut))
        return fut

    def call(self, fn: TxnFn) -> asyncio.Future[Any]:
        """Run ``fn(connection)`` inside the next batch's transaction (a barrier)."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._enqueue(Entry((), fn=fn, future=fut))
        return fut

    def _enqueue(self, entry: Entry) -> None:
        if self._closing:
            raise StoreError("the store is closed; write not accepted", kind="closed")
        if self._held and self._failure is not None and not entry.retry and entry.fn is None:
            tell(entry, self._failure)  # rule 6: refused now, not after the retry timer
            return
        self._pending.append(entry)
        self._pending_writes += entry.weight
        if not entry.defer or self._pending_writes >= DEFER_WRITES:
            if not entry.defer:
                self._urgent += 1
            if self._pending_writes >= EARLY_WRITES and not self._inflight:
                self._kick()  # rule 2: a big unit starts committing at once
            elif not self._kicked:
                self._kicked = True
                self._loop.call_soon(self._kick)
        elif self._defer_timer is None:
            self._defer_timer = self._loop.call_later(DEFER, self._kick_deferred)

    def _kick_deferred(self) -> None:
        self._defer_timer = None
        self._kick(deferred=True)

    def close(self) -> None:
        """Refuse new writes; what is pending or held is still committed."""
        self._closing = True
        self._kick(deferred=True)

    def abandon(self, reason: str) -> int:
        """Fail everything not yet in the committer (a flush that timed out at shutdown)."""
        entries = [*self._held, *self._pending]
        self._held.clear()
        self._pending.clear()
        self._pending_writes = self._urgent = 0
        err = StoreError(reason, kind="closed")
        for entry in entries:
            tell(entry, err)
        self._check_drained()
        return sum(e.weight for e in entries)

    # -- batches --------------------------------------------------------------------------
    def _kick(self, deferred: bool = False) -> None:
        """Start batches if anyone waits for what is pending (or ``deferred``: time is up)."""
        self._kicked = False
        go = deferred or self._closing or self._urgent or self._pending_writes >= DEFER_WRITES
        while go and self._pending and not self._held and len(self._inflight) < PIPELINE:
            batch = self._take()
            started = self._clock.monotonic()
            try:
                if self._by_entry is not None:
                    fut: asyncio.Future[Any] = self._by_entry(batch)
                    statements = collapsed = 0
                else:
                    steps, statements, collapsed = plan_batch(batch)
                    fut = self._committer.start(steps)
            except Exception as exc:  # an unhashable key, or the committer is gone
                self._failed(batch, exc, started)
                continue
            self._inflight.append(batch)
            fut.add_done_callback(partial(self._done, batch, started, statements, collapsed))
        if self._pending and self._defer_timer is None:  # left waiting: they still have a time
            self._defer_timer = self._loop.call_later(DEFER, self._kick_deferred)
        self._check_drained()

    def _take(self) -> list[Entry]:
        batch: list[Entry] = []
        taken = urgent = 0
        pending = self._pending
        while pending and (not batch or taken + pending[0].weight <= self._max_batch):
            entry = pending.popleft()
            taken += entry.weight
            urgent += not entry.defer
            batch.append(entry)
        self._pending_writes -= taken
        self._urgent -= urgent
        if not pending and self._defer_timer is not None:
            self._defer_timer.cancel()
            self._defer_timer = None
        return batch

    def _done(
        self,
        batch: list[Entry],
        started: float,
        statements: int,
        collapsed: int,
        fut: asyncio.Future[Any],
    ) -> None:
        self._inflight.remove(batch)
        exc = StoreError("batch abandoned", kind="closed") if fut.cancelled() else fut.exception()
        if exc is None:
            result = fut.result()
            refused: dict[int, Exception] = {}
            if type(result) is Settlement:
                statements, collapsed, refused = result.statements, result.collapsed, result.refused
                result = result.results
            self.statements += statements
            self.collapsed += collapsed
            self._succeeded(batch, result, started, refused)
        else:
            self._failed(batch, exc, started)
        if not self._kicked:  # rule 2: at the end of this turn, once its runs took a step
            self._kicked = True
            self._loop.call_soon(self._kick)

    def _account(self, batch: list[Entry], started: float) -> int:
        size = sum(e.weight for e in batch)
        elapsed = self._clock.monotonic() - started
        self.batches += 1
        self.last_batch_size = size
        self.max_batch_size = max(self.max_batch_size, size)
        self.last_commit_seconds = elapsed
        self.commit_seconds += elapsed
        return size

    def _succeeded(
        self, batch: list[Entry], results: list[Any], started: float, refused: dict[int, Exception]
    ) -> None:
        self.writes += self._account(batch, started)
        if self._held:  # rule 6: a row this batch stored is newer than the held write of it
            stored = keys_of([e for i, e in enumerate(batch) if i not in refused])
            for entry in self._held:
                entry.writes = [
                    w for w in entry.writes if w.key is None or (w.stmt, w.key) not in stored
                ]
        elif self.failing is not None and any(e.writes or e.fn is not None for e in batch):
            self._recovered()
        observer = self.observer
        if observer is not None:
            try:
                observer([e.writes for i, e in enumerate(batch) if e.writes and i not in refused])
            except Exception:  # a live view must never cost a caller its answer
                log.exception("store.observer_failed")
        fn_results = iter(results)
        for i, entry in enumerate(batch):
            if refused and i in refused:  # stored nothing; never retried (it cannot land)
                err = refused[i]
                tell(entry, err if isinstance(err, StoreError) else StoreError(str(err)))
                continue
            value = next(fn_results) if entry.fn is not None else None
            if entry.future is not None:
                if not entry.future.done():
                    entry.future.set_result(value)
            elif entry.then is not None:
                call_then(entry.then, None)

    def _failed(self, batch: list[Entry], exc: BaseException, started: float) -> None:
        size = self._account(batch, started)
        self.failed_batches += 1
        self.failed_writes += size
        if isinstance(exc, StoreError):
            err = exc
        else:
            err = StoreError(f"{type(exc).__name__}: {exc}")
            err.__cause__ = exc
        self._note_failure(err)
        held = [e for e in batch if e.retry]
        for entry in batch:
            if not entry.retry:
                tell(entry, err)
        if held:
            self._held.extend(held)
            if self._retry_timer is None:
                self._retry_timer = self._loop.call_later(self._retry_delay, self._release_held)
                self._retry_delay = min(RETRY_MAX, self._retry_delay * 2)

    def _release_held(self) -> None:
        """Rule 6: put held entries back at the head of ``pending``, in their order."""
        self._retry_timer = None
        held, self._held = self._held, []
        for entry in reversed(held):
            self._pending.appendleft(entry)
            self._pending_writes += entry.weight
            self._urgent += not entry.defer
        self._kick(deferred=True)

    # -- failure episodes (rule 7) --------------------------------------------------------
    def _note_failure(self, err: StoreError) -> None:
        now = self._clock.monotonic()
        self.last_error = err.reason
        self._failure = err
        if self._on_error is not None:
            self._on_error(err.kind)
        if self._quiet is not None:  # failing again within the quiet spell: same episode
            self._quiet.cancel()
            self._quiet = None
        if not self.episode:
            self.episode = True
            self.failing = err.kind
            self._failed_since = self._told = now
            self._failed_count = 1
            log.error("store.write_failed", kind=err.kind, error=str(err))
            if self._on_health is not None:
                self._on_health()
            return
        was_failing = self.failing is not None
        self.failing = err.kind
        self._failed_count += 1
        if not was_failing and self._on_health is not None:
            self._on_health()
        if now - self._told >= STILL_FAILING_EVERY:
            self._told = now
            log.error(
                "store.still_failing",
                kind=err.kind,
                failed_batches=self._failed_count,
                for_s=round(now - self._failed_since, 1),
            )

    def _recovered(self) -> None:
        """Writes commit again: healthy now; the episode ends after QUIET_AFTER of that."""
        kind, self.failing = self.failing, None
        self._failure = None
        self._retry_delay = RETRY_FIRST
        if self._on_health is not None:
            self._on_health()
        if self._quiet_after <= 0:
            self._episode_over(kind)
        elif self._quiet is None:
            self._quiet = self._loop.call_later(self._quiet_after, self._episode_over, kind)

    def _episode_over(self, kind: str | None) -> None:
        self._quiet = None
        self.episode = False
        log.info(
            "store.write_recovered",
            kind=kind,
            failed_batches=self._failed_count,
            after_s=round(self._clock.monotonic() - self._failed_since, 3),
        )

    def _check_drained(self) -> None:
        busy = self._pending or self._held or self._inflight
        if self._closing and not busy and not self._drained.done():
            self._drained.set_result(None)
