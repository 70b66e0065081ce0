"""``store.backup``: an online copy of the store while serving (store/sqlite/backup.py)."""

from __future__ import annotations

from typing import Any

import structlog

from automationd.admin.args import req_str
from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.clock import Clock
from automationd.store.api import Store

log = structlog.get_logger("automationd.store")


class BackupCommands:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def commands(self) -> list[Command]:
        # writes=True: it creates a file (audited; refused on a read-only web console)
        return [Command("store.backup", self.store_backup, writes=True)]

    async def store_backup(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        path = req_str(args, "path", limit=4096)  # PATH_MAX
        started = self._clock.monotonic()
        size = await self._store.backup(path)
        took = self._clock.monotonic() - started
        log.info("store.backed_up", path=path, bytes=size, duration_s=round(took, 3))
        return {"path": path, "bytes": size, "duration_s": round(took, 3)}
