"""The daemon's own commands: ``status``, ``limits.list``, ``breakers.list``, ``reload``."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from automationd import __version__
from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.clock import Clock
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.pool import WorkerPool
from automationd.engine.report import DlqCount
from automationd.engine.services import ServiceRegistry
from automationd.fleet.api import Crew
from automationd.store.api import Store
from automationd.units import rfc3339


class DaemonCommands:
    def __init__(
        self,
        *,
        jobs: JobTable,
        pool: WorkerPool,
        launcher: Launcher,
        dlq: DlqCount,
        store: Store,
        services: ServiceRegistry,
        clock: Clock,
        started_at: float,
        reload: Callable[[], Awaitable[dict[str, int]]],
        crew: Crew | None = None,
    ) -> None:
        self._crew = crew
        self._jobs = jobs
        self._pool = pool
        self._launcher = launcher
        self._dlq = dlq
        self._store = store
        self._services = services
        self._clock = clock
        self._started_at = started_at
        self._reload = reload

    def commands(self) -> list[Command]:
        return [
            Command("status", self.status, writes=False),
            Command("limits.list", self.limits_list, writes=False),
            Command("breakers.list", self.breakers_list, writes=False),
            Command("reload", self.do_reload, writes=True),
        ]

    async def status(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        counts = self._jobs.counts()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": rfc3339(self._started_at),
            "uptime_s": round(self._clock.time() - self._started_at, 3),
            "jobs": {
                "total": len(self._jobs),
                "enabled": counts["enabled"],
                "paused": counts["paused"],
                "completed": counts["completed"],
            },
            "queue_depth": self._pool.waiting,
            "workers": {"busy": self._pool.busy, "max": self._pool.max},
            "runs_in_flight": len(self._launcher.live),
            "dlq_size": self._dlq.value,
            "store": {"healthy": self._store.healthy, "reason": self._store.health_reason},
            **(self._crew.status() if self._crew is not None else {}),
        }

    async def limits_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        return self._services.limits_list()

    async def breakers_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        return self._services.breakers_list()

    async def do_reload(self, args: dict[str, Any], caller: Caller) -> dict[str, int]:
        return await self._reload()
