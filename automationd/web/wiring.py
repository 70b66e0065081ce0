"""The web console as daemon.py wires it, in two places: as a command group (``web.login``,
served, scoped and audited with every other group) and, once that table exists, as a context
manager serving it beside the admin socket and the metrics endpoint. With ``[web] listen``
empty the group still answers (``conflict``: the console is off) and serving does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from automationd.admin.command import Command, CommandTable
from automationd.admin.web_cmds import WebCommands
from automationd.clock import Clock
from automationd.config.model import Config
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.pool import WorkerPool
from automationd.engine.report import DlqCount
from automationd.store.api import Store
from automationd.web.app import serve_web
from automationd.web.auth import WebAuth, load_token
from automationd.web.console import Console, make_templates
from automationd.web.feed import Feed


class WebConsole:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        store: Store,
        jobs: JobTable,
        gauges: tuple[WorkerPool, Launcher, DlqCount],
    ) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._jobs = jobs
        self._gauges = gauges
        self._auth: WebAuth | None = None
        if config.web.listen:  # its token is made at the first start with the console on
            self._auth = WebAuth(load_token(config.daemon.state_dir), clock)

    def commands(self) -> list[Command]:
        auth = self._auth
        return WebCommands(login_url=auth.login_url if auth is not None else None).commands()

    @asynccontextmanager
    async def serve(self, table: CommandTable, tg: asyncio.TaskGroup) -> AsyncIterator[str | None]:
        """Serve ``table`` (the daemon's one command table) until the block exits; yields
        the bound address, or None when the console is off."""
        if self._auth is None:
            yield None
            return
        async with serve_web(self._console(table, self._auth), tg) as address:
            yield address

    def _console(self, table: CommandTable, auth: WebAuth) -> Console:
        store, clock = self._store, self._clock
        pool, launcher, dlq = self._gauges

        def counters() -> dict[str, Any]:
            """The overview's live numbers, sent with every burst of run changes."""
            return {
                "queue_depth": pool.waiting,
                "workers_busy": pool.busy,
                "workers_max": pool.max,
                "runs_in_flight": len(launcher.live),
                "dlq_size": dlq.value,
                "store": "healthy" if store.healthy else "unhealthy",
            }

        return Console(
            listen=self._config.web.listen,
            table=table,
            jobs=self._jobs,
            store=store,
            feed=Feed(store.watch, clock, counters),
            auth=auth,
            clock=clock,
            read_only=self._config.web.read_only,
            templates=make_templates(clock.time),
            counters=counters,
        )
