"""This daemon's leases: which runs it holds, under which fencing token.

Rules (several daemons on PostgreSQL; on SQLite the one daemon holds everything, token 0):
- A run is held by one daemon at a time. The daemon that creates a run and can start it at
  once holds it from birth, under its own life's token (``token``); a run that would only
  wait is born unowned, for whichever daemon has room to claim it (engine/crew.py's claims
  loop). A claim gives the run a new token from the database's sequence.
- Every write of a held run is checked against the token recorded here, in the writing
  transaction (store/pg/committer.py): if the run's row carries another token, another
  daemon took it over (we were declared dead), and the write is refused. Such runs are
  *lost*: ``lost()`` hands them to whoever abandons their tasks, without a word to the store.
- A run is released only after its last write is durable (engine/launcher.py releases it
  from a ``submit_then`` behind the run's writes), so a queued end write is never refused for
  want of a token.
- ``reborn`` (a new life after being declared dead) forgets every hold: all of them are stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable


class Leases:
    __slots__ = ("_held", "_lost", "_ready", "node_id", "priority_of", "shares_work", "token")

    def __init__(
        self,
        node_id: str,
        *,
        token: int = 0,
        shares_work: bool = False,
        priority_of: Callable[[str], int] = lambda job: 0,
    ) -> None:
        self.node_id = node_id
        self.token = token
        self.shares_work = shares_work  # runs that would wait are left for any daemon
        self.priority_of = priority_of
        self._held: dict[str, int] = {}
        self._lost: list[str] = []
        self._ready: asyncio.Event | None = None

    def hold(self, run_id: str, token: int) -> None:
        self._held[run_id] = token

    def token_of(self, run_id: str) -> int | None:
        return self._held.get(run_id)

    def release(self, run_id: str) -> None:
        self._held.pop(run_id, None)

    def held(self) -> list[str]:
        return list(self._held)

    def reborn(self, token: int) -> list[str]:
        """A new life: every hold is stale. Returns the runs that were held."""
        was = list(self._held)
        self._held.clear()
        self.token = token
        return was

    # -- runs another daemon took over ---------------------------------------------------
    def lose(self, run_ids: Iterable[str]) -> None:
        """The store refused writes of these runs: their tokens are stale."""
        for run_id in run_ids:
            if self._held.pop(run_id, None) is not None:
                self._lost.append(run_id)
        if self._lost:
            self._event().set()

    async def lost(self) -> list[str]:
        """Wait until some runs are lost, then take them all."""
        event = self._event()
        while not self._lost:
            event.clear()
            await event.wait()
        out, self._lost = self._lost, []
        return out

    def _event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready
