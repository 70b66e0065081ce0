"""The fleet's command: ``workers.list`` (SPEC §7.4), every daemon sharing the store."""

from __future__ import annotations

from typing import Any

from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.fleet.api import Crew


class FleetCommands:
    def __init__(self, *, crew: Crew) -> None:
        self._crew = crew

    def commands(self) -> list[Command]:
        return [Command("workers.list", self.workers_list, writes=False)]

    async def workers_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        return await self._crew.workers()
