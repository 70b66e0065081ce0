"""One caller's submission to the group-commit writer (store/writer.py), and telling it.

An entry is a caller's list of ``Write``s (or one function run inside the transaction) and
how to tell the caller once it is durable or refused: a future, a callback, or nobody
(``post``). Entries are never split across batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from automationd.errors import StoreError
from automationd.store.batch import TxnFn
from automationd.store.write import Then, Write

log = structlog.get_logger("automationd.store")


class Entry:
    """One caller's submission and how to tell the caller (a future, a callback, nobody).
    ``retry``: it must land (held and tried again after a failed batch); ``defer``: nobody
    waits for it, so it may wait for company (the writer's rule 1)."""

    __slots__ = ("defer", "fn", "future", "retry", "then", "weight", "writes")

    def __init__(
        self,
        writes: Sequence[Write],
        fn: TxnFn | None = None,
        future: asyncio.Future[Any] | None = None,
        then: Then | None = None,
        retry: bool = False,
        defer: bool = False,
    ) -> None:
        self.writes = writes
        self.fn = fn
        self.future = future
        self.then = then
        self.retry = retry
        self.defer = defer
        self.weight = len(writes) if fn is None else 1


def tell(entry: Entry, err: StoreError) -> None:
    """The entry failed (or was refused): its caller hears why."""
    if entry.future is not None:
        if not entry.future.done():
            entry.future.set_exception(err)
    elif entry.then is not None:
        call_then(entry.then, err)


def call_then(then: Then, exc: BaseException | None) -> None:
    """One caller's callback failing must not keep the rest of its batch from being told."""
    try:
        then(exc)
    except Exception:
        log.exception("store.callback_failed", callback=getattr(then, "__qualname__", "?"))
