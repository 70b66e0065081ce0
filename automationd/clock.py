"""The only module that reads time. Everything else receives a ``Clock``.

Wall time (``time()``/``now()``) decides *when* things are due; monotonic time measures
*how long* and is what sleeps are based on, so a wall-clock jump never stretches a sleep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol

UTC = dt.UTC


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Aware UTC datetime."""
        ...

    def time(self) -> float:
        """Wall time as epoch seconds (UTC); cheaper than now() on hot paths."""
        ...

    def monotonic(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``monotonic() >= deadline``."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        await asyncio.sleep(max(0.0, delay))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
