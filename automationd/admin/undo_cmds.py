"""Taking back what went wrong: ``runs.rollback`` and the dead-letter queue's ``dlq.summary``.

``runs.rollback`` answers the run itself (a rollback continues the same run,
engine/undo.py), once it has ended or after a bounded wait. ``dlq.summary`` is the drain
report: entries counted by job and error kind, with the oldest and newest and the messages
that come up most; it takes the same filters as ``dlq.retry``.
"""

from __future__ import annotations

from typing import Any

from automationd.admin.args import id_arg, opt_name, opt_str, time_arg
from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.engine.redo import Redo
from automationd.errors import ErrorKind, bad_request
from automationd.store.api import Store
from automationd.units import rfc3339

_KINDS = frozenset(k.value for k in ErrorKind)


def kind_arg(args: dict[str, Any], key: str = "kind") -> str | None:
    """An error kind filter: one of SPEC §4's kinds (or ``stale``, ``cancelled``)."""
    kind = opt_str(args, key)
    if kind is not None and kind not in _KINDS:
        raise bad_request(f"args.{key}: unknown error kind {kind!r} ({', '.join(sorted(_KINDS))})")
    return kind


class UndoCommands:
    def __init__(self, *, redo: Redo, store: Store) -> None:
        self._redo = redo
        self._store = store

    def commands(self) -> list[Command]:
        return [
            Command("runs.rollback", self.runs_rollback, writes=True),
            Command("dlq.summary", self.dlq_summary, writes=False),
        ]

    async def runs_rollback(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return (await self._redo.rollback(id_arg(args))).to_json()

    async def dlq_summary(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        groups = await self._store.dlq_summary(
            job=opt_name(args, "job"), kind=kind_arg(args), since=time_arg(args, "since")
        )
        for g in groups:
            g["oldest"] = rfc3339(g["oldest"])
            g["newest"] = rfc3339(g["newest"])
        return groups
