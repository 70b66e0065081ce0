"""A fleet of one (SQLite): this daemon is the only node and always the leader.

It keeps the single-host behaviour exactly: crash recovery of every live run at start, the
scheduler always firing, nothing in the background. ``workers.list`` shows the one node.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from automationd import __version__
from automationd.clock import Clock
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.pool import WorkerPool
from automationd.engine.recovery import recover
from automationd.engine.report import Report
from automationd.store.api import Store
from automationd.units import rfc3339


class SoloCrew:
    def __init__(
        self,
        *,
        node_id: str,
        store: Store,
        jobs: JobTable,
        launcher: Launcher,
        report: Report,
        pool: WorkerPool,
        clock: Clock,
    ) -> None:
        self._node_id = node_id or f"{socket.gethostname()}:{os.getpid()}"
        self._store = store
        self._jobs = jobs
        self._launcher = launcher
        self._report = report
        self._pool = pool
        self._clock = clock
        self._started = clock.time()

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def leader(self) -> bool:
        return True

    async def start(self) -> int:
        return await recover(
            store=self._store,
            jobs=self._jobs,
            launcher=self._launcher,
            report=self._report,
            now=self._clock.time(),
        )

    async def run(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def workers(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self._node_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "version": __version__,
                "started_at": rfc3339(self._started),
                "heartbeat_at": rfc3339(self._clock.time()),
                "capacity": self._pool.max,
                "busy": self._pool.busy,
                "leader": True,
            }
        ]

    def status(self) -> dict[str, Any]:
        return {"node": {"id": self._node_id, "leader": True}, "fleet": {"nodes": 1}}

    async def cancel_elsewhere(self, run_id: str) -> bool:
        return False
