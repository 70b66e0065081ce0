"""A store failure episode, told as the writer's rule 7 says (store/writer.py): once when it
starts (``store.write_failed``), once a minute while it lasts (``store.still_failing``, with
a count), and once when a batch commits again (``store.write_recovered``); never once per
request."""

from __future__ import annotations

import structlog

from automationd.clock import Clock
from automationd.errors import StoreError

log = structlog.get_logger("automationd.store")

STILL_FAILING_EVERY = 60.0


class Episode:
    """The writer's failing state: ``kind`` while batches fail, None once one commits."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.kind: str | None = None
        self._since = self._told = 0.0
        self._count = 0

    def failed(self, err: StoreError) -> bool:
        """A batch failed; True if that starts an episode."""
        now = self._clock.monotonic()
        started = self.kind is None
        self.kind = err.kind
        if started:
            self._since = self._told = now
            self._count = 1
            log.error("store.write_failed", kind=err.kind, error=str(err))
        else:
            self._count += 1
            if now - self._told >= STILL_FAILING_EVERY:
                self._told = now
                log.error(
                    "store.still_failing",
                    kind=err.kind,
                    failed_batches=self._count,
                    for_s=round(now - self._since, 1),
                )
        return started

    def recovered(self) -> None:
        log.info(
            "store.write_recovered",
            kind=self.kind,
            failed_batches=self._count,
            after_s=round(self._clock.monotonic() - self._since, 3),
        )
        self.kind = None
