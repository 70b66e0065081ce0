"""Idempotency keys: the first request with a key does the work, every other one shares it.

The first caller registers a future *synchronously*, before any await, so concurrent callers
with the same key find it and wait for the same answer; only the first looks up the key in the
store (for keys from earlier lives of the daemon) and creates. No unique-constraint error can
leak out. Recent keys stay in a bounded in-memory map; older ones are found by the lookup.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

KEYS_KEPT = 100_000


class OncePerKey(Generic[V]):
    def __init__(self, kept: int = KEYS_KEPT) -> None:
        self._kept = kept
        self._keys: OrderedDict[Hashable, asyncio.Future[V]] = OrderedDict()

    async def get_or_create(
        self,
        key: Hashable,
        lookup: Callable[[], Awaitable[V | None]],
        create: Callable[[], Awaitable[V]],
    ) -> tuple[V, bool]:
        """``(value, existing)``: ``existing`` is True unless this call created the value."""
        seen = self._keys.get(key)
        if seen is not None:
            return await asyncio.shield(seen), True
        mine: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._keys[key] = mine
        if len(self._keys) > self._kept:
            self._keys.popitem(last=False)
        try:
            old = await lookup()
            if old is not None:
                mine.set_result(old)
                return old, True
            value = await create()
        except BaseException as exc:
            self._keys.pop(key, None)
            if not mine.done():
                mine.set_exception(exc)
                mine.exception()  # retrieved: waiters re-raise it themselves
            raise
        mine.set_result(value)
        return value, False
