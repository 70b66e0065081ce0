"""The command table: every admin command once, served by the socket and the HTTP API.

Each noun's commands live in a module of their own (jobs, runs and dead letters, events, the
daemon); this module only puts them together and refuses a name given twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from automationd.admin.command import Command


class CommandGroup(Protocol):
    def commands(self) -> list[Command]: ...


def build_table(groups: Iterable[CommandGroup]) -> dict[str, Command]:
    table: dict[str, Command] = {}
    for group in groups:
        for command in group.commands():
            if command.name in table:
                raise ValueError(f"command {command.name!r} is defined twice")
            table[command.name] = command
    return table
