"""What the daemon asks of its place in a fleet (one daemon alone on SQLite is a fleet of one).

Two crews implement it: ``engine/solo.py`` (SQLite: one node, always the leader, crash
recovery at start) and ``engine/crew.py`` (PostgreSQL: heartbeats, a leader, rescue of dead
peers, claims of unowned runs). The admin commands (``workers.list``, ``status``) and
``runs.cancel`` of a run held elsewhere go through it; the Store protocol knows none of this.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Protocol


def default_node_id() -> str:
    """``[store] node_id = ""``: the host name and pid (unique, but new at every start)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Crew(Protocol):
    @property
    def node_id(self) -> str: ...

    @property
    def leader(self) -> bool:
        """Whether this daemon's scheduler fires (the one leader of the fleet)."""

    async def start(self) -> int:
        """Join (register, take over what is ours); returns the runs resumed at once."""

    async def run(self) -> None:
        """The background part (heartbeats, leadership, rescue, claims) until cancelled."""

    async def stop(self) -> None:
        """Leave cleanly once the runs in memory are drained and their writes durable."""

    async def workers(self) -> list[dict[str, Any]]:
        """SPEC §7.4 ``workers.list`` rows."""

    def status(self) -> dict[str, Any]:
        """``status``'s ``node`` and ``fleet`` parts (no store round trip)."""

    async def cancel_elsewhere(self, run_id: str) -> bool:
        """Cancel a live run this daemon does not hold; False if nobody could be asked."""
