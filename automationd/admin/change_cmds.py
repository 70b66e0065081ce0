"""Changing jobs safely (issue 14): ``jobs.update``, ``jobs.explain``, ``jobs.backfill``."""

from __future__ import annotations

from typing import Any

from automationd.admin.args import bool_arg, name_arg, payload_arg, time_arg
from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.engine.backfill import Backfill
from automationd.engine.catalog import Catalog
from automationd.engine.edit import Editor, Update
from automationd.engine.explain import Explainer
from automationd.errors import bad_request


class JobChangeCommands:
    def __init__(
        self, *, catalog: Catalog, editor: Editor, explainer: Explainer, backfill: Backfill
    ) -> None:
        self._catalog = catalog
        self._editor = editor
        self._explainer = explainer
        self._backfill = backfill

    def commands(self) -> list[Command]:
        return [
            Command(
                "jobs.update",
                self.jobs_update,
                writes=True,
                json_args=frozenset({"patch", "if_revision", "override", "drop_override"}),
            ),
            Command("jobs.explain", self.jobs_explain, writes=False),
            Command(
                "jobs.backfill", self.jobs_backfill, writes=True, json_args=frozenset({"dry_run"})
            ),
        ]

    async def jobs_update(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = name_arg(args)
        drop = bool_arg(args, "drop_override")
        patch = args.get("patch")
        if drop and patch:
            raise bad_request("args.patch: give a patch or drop_override, not both")
        if not drop and not isinstance(patch, dict):
            raise bad_request("args.patch: expected an object of [[jobs]] keys (null removes)")
        payload_arg(args, "patch")  # finite numbers, at most 1 MiB of JSON
        rev = args.get("if_revision")
        if rev is not None and (isinstance(rev, bool) or not isinstance(rev, int) or rev < 1):
            raise bad_request("args.if_revision: expected a positive integer")
        update = Update(
            name=name,
            patch=None if drop else patch,
            if_revision=rev,
            override=bool_arg(args, "override"),
            drop_override=drop,
        )
        return (await self._editor.update(update)).to_json()

    async def jobs_explain(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return await self._explainer.explain(self._catalog.get(name_arg(args)))

    async def jobs_backfill(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = self._catalog.get(name_arg(args))
        since, until = time_arg(args, "since"), time_arg(args, "until")
        if since is None or until is None:
            raise bad_request("args.since, args.until: both required (RFC 3339)")
        return await self._backfill.run(job, since, until, dry_run=bool_arg(args, "dry_run"))
