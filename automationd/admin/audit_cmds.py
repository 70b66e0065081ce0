"""``audit.list``: the audit trail (admin/audit.py), newest first."""

from __future__ import annotations

from typing import Any

from automationd.admin.args import int_arg, opt_name, time_arg
from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.store.api import AuditQuery, Store


class AuditCommands:
    def __init__(self, *, store: Store) -> None:
        self._store = store

    def commands(self) -> list[Command]:
        return [
            Command("audit.list", self.audit_list, writes=False, json_args=frozenset({"limit"}))
        ]

    async def audit_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        """An admin sees every entry; a ``user_group`` member only its own."""
        query = AuditQuery(
            job=opt_name(args, "job"),
            uid=None if caller.admin else caller.uid,
            since=time_arg(args, "since"),
            limit=int_arg(args, "limit", 50, 1, 1000),
        )
        return [e.to_json() for e in await self._store.audit(query)]
