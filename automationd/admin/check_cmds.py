"""``store.check`` (SPEC §7.1): is the store sound? ``{ok, problems: [str]}``.

The check reads the whole database on a thread of its own (store/sqlite/check.py): SQLite's
``integrity_check``, rows pointing at runs that are not stored, and every row decoded. A
damaged store answers ``ok: false`` with one line per problem; it is not an error of the
request, so the answer is never ``internal``.
"""

from __future__ import annotations

from typing import Any, Protocol

from automationd.admin.command import Command
from automationd.caller import Caller


class Checkable(Protocol):
    async def check(self) -> list[str]: ...


class CheckCommands:
    def __init__(self, *, store: Checkable) -> None:
        self._store = store

    def commands(self) -> list[Command]:
        return [Command("store.check", self.store_check, writes=False)]

    async def store_check(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        problems = await self._store.check()
        return {"ok": not problems, "problems": problems}
