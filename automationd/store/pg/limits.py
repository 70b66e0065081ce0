"""A service's limits for the whole fleet: the two functions of limits.sql, from Python.

``admit`` is one round trip per admission (the head of a service's line asks; it either gets
a token, or the seconds to wait, or a breaker refusal). ``report`` rides the writer: it is
run inside the next group-commit batch, never awaited by the attempt that reports, in
submission order (a 429's pause lands before later admissions of this daemon ask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from automationd.store.pg.store import PgStore

log = structlog.get_logger("automationd.services")

_ADMIT = "SELECT * FROM automationd_admit($1, $2, $3, $4, $5)"
_REPORT = "SELECT automationd_report($1, $2, $3, $4, $5, $6, $7, $8)"


@dataclass(frozen=True, slots=True)
class Admission:
    granted: bool
    wait: float  # seconds until a token or the pause's end
    state: str  # the breaker's: closed | half_open | open
    reopen_in: float  # > 0: the breaker refuses for this long
    probe: bool  # this admission is the half-open probe
    tokens: float | None
    paused_for: float
    failures: int
    opened_at: float | None


CLOSED = Admission(True, 0.0, "closed", 0.0, False, None, 0.0, 0, None)


class SharedLimits:
    def __init__(self, store: PgStore) -> None:
        self._store = store

    async def admit(
        self, service: str, interval: float, burst: int, failures: int, reset: float
    ) -> Admission:
        """Ask for one grant (``interval`` 0: no bucket; ``failures`` 0: no breaker)."""
        rows = await self._store.fetch(_ADMIT, service, interval, burst, failures, reset)
        r = rows[0]
        return Admission(
            r["granted"],
            float(r["wait"]),
            r["state"],
            float(r["reopen_in"]),
            r["probe"],
            r["tokens"],
            float(r["paused_for"]),
            int(r["failures"]),
            r["opened_at"],
        )

    def report(
        self,
        service: str,
        *,
        ok: bool = False,
        failure: bool = False,
        probe: bool = False,
        failures: int = 0,
        pause: float = 0.0,
        interval: float = 0.0,
        remaining: int = -1,
    ) -> None:
        """Breaker outcome, pause, the partner's remaining count: stored with the next batch."""
        args = (service, ok, failure, probe, failures, pause, interval, remaining)

        async def run(conn: Any) -> None:
            await conn.fetchval(_REPORT, *args)

        try:
            fut = self._store.in_next_batch(run)
        except Exception as exc:  # the store is closing: nothing more to share
            log.warning("service.report_lost", service=service, error=str(exc))
            return
        fut.add_done_callback(_logged)


def _logged(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("service.report_failed", error=str(fut.exception()))
