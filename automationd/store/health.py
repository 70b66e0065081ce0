"""A store's health, the same for every backend (SQLite, PostgreSQL): one probe, one reason.

Rules:
- The store is healthy while its last probe passed and its writer is not failing; the reason
  is the probe's failure first, else the writer's last error (``store: disk full``).
- Every ``interval`` the probe sends an empty batch through the writer, then a trivial read
  (the backend's ``ping``), each under ``timeout``: a stalled writer thread or connection
  and a stalled reader both show. The ping is made only once the writer answered (a
  coroutine made and then dropped would never be awaited).
- ``store.unhealthy`` is logged once when a probe starts failing, unless the writer is in a
  failure episode of its own (it logs that itself, store/writer.py rule 7); ``store.healthy``
  only after an unhealthy line was logged.
- Waiters (``wait_healthy``) wake on every change: a probe's verdict moving, or the writer's
  failure state (its ``on_health`` callback calls ``changed``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from automationd.clock import Clock
from automationd.errors import StoreError
from automationd.store.writer import Writer

log = structlog.get_logger("automationd.store")


class StoreHealth:
    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        ping: Callable[[], Awaitable[object]],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self._writer = writer
        self._clock = clock
        self._ping = ping
        self._interval = interval
        self._timeout = timeout
        self._failure: str | None = None  # the last probe's, or None when it passed
        self._changed = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._failure is None and self._writer.failing is None

    @property
    def reason(self) -> str | None:
        if self._failure is not None:
            return self._failure
        if self._writer.failing is not None:
            return self._writer.last_error
        return None

    async def wait_healthy(self) -> None:
        while not self.healthy:
            self._changed.clear()
            await self._changed.wait()

    def changed(self) -> None:
        """Something the verdict depends on moved (the writer's ``on_health`` callback)."""
        self._changed.set()

    async def probe_loop(self) -> None:
        """Probe every ``interval`` until cancelled (the store's own task)."""
        clock, was, told = self._clock, None, False
        while True:
            await clock.sleep_until(clock.monotonic() + self._interval)
            self._failure = failure = await self.probe()
            if failure == was:
                continue
            if failure is None:
                if told:
                    log.info("store.healthy")
                told = False
            elif not told and not self._writer.episode:
                log.error("store.unhealthy", reason=failure)
                told = True
            was = failure
            self._changed.set()

    async def probe(self) -> str | None:
        """One probe: None if the writer and the reader both answered in time, else why not."""
        for what, call in (("writer", self._through_writer), ("reader", self._ping)):
            try:
                async with asyncio.timeout(self._timeout):
                    await call()
            except TimeoutError:
                return f"store: {what} stalled (no answer within {self._timeout:g}s)"
            except StoreError as exc:
                return exc.reason
        return None

    async def _through_writer(self) -> None:
        await self._writer.submit(())
