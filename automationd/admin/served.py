"""The command table as the daemon serves it: every group's commands, plus issue 14's (job
changes, the audit trail, backups) and issue 11's store check, scoped by ``user_group``
(admin/scope.py) and audited (admin/audit.py). The socket, the web console and SIGHUP all
use this one table, so the rules and the trail hold whoever calls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from automationd.admin.audit import AuditTrail
from automationd.admin.audit_cmds import AuditCommands
from automationd.admin.backup_cmds import BackupCommands
from automationd.admin.change_cmds import JobChangeCommands
from automationd.admin.check_cmds import CheckCommands
from automationd.admin.command import Command
from automationd.admin.commands import CommandGroup, build_table
from automationd.admin.scope import Scope
from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.engine.backfill import Backfill
from automationd.engine.catalog import Catalog
from automationd.engine.edit import Editor
from automationd.engine.explain import Explainer
from automationd.engine.launcher import Launcher
from automationd.engine.pool import WorkerPool
from automationd.store.api import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class Parts:
    """What the served table needs beyond the other groups."""

    catalog: Catalog
    store: Store
    clock: Clock
    ids: IdGenerator
    launcher: Launcher
    pool: WorkerPool


def served_table(groups: Iterable[CommandGroup], p: Parts) -> dict[str, Command]:
    cat = p.catalog
    changes = JobChangeCommands(
        catalog=cat,
        editor=Editor(catalog=cat, store=p.store, clock=p.clock),
        explainer=Explainer(pool=p.pool, scheduler=cat.scheduler, store=p.store, clock=p.clock),
        backfill=Backfill(launcher=p.launcher, store=p.store, clock=p.clock),
    )
    table = build_table(
        [
            *groups,
            changes,
            AuditCommands(store=p.store),
            BackupCommands(store=p.store, clock=p.clock),
            CheckCommands(store=p.store),  # issue 11: store.check
        ]
    )
    scope = Scope(jobs=cat.jobs, store=p.store, config_path=lambda: cat.config.path)
    return AuditTrail(store=p.store, clock=p.clock, ids=p.ids).wrap(scope.wrap(table))
