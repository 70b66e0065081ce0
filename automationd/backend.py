"""Which store and which crew (issue 16): SQLite for one host, or PostgreSQL for a fleet.

``daemon.py`` wires the daemon; this module is its one choice that depends on ``[store]``:
the store to open, the service gates (a fleet's share their limits), and the crew (a fleet
of one, or this daemon's part in a fleet). asyncpg is imported only for ``postgresql``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

from automationd.clock import Clock
from automationd.config.model import StoreConfig
from automationd.engine.catalog import Catalog
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.pool import WorkerPool
from automationd.engine.report import Report
from automationd.engine.scheduler import Scheduler
from automationd.engine.services import ServiceGate
from automationd.engine.solo import SoloCrew
from automationd.fleet.api import Crew, default_node_id
from automationd.fleet.leases import Leases
from automationd.store.api import Store
from automationd.store.sqlite.store import open_sqlite
from automationd.store.writer import QUIET_AFTER


class Backend:
    def __init__(self, config: StoreConfig, jobs: JobTable, clock: Clock) -> None:
        self.config = config
        self.fleet = config.backend == "postgresql"
        self._clock = clock
        self.leases = Leases(
            config.node_id or default_node_id(),
            shares_work=self.fleet,
            priority_of=lambda name: j.spec.priority if (j := jobs.get(name)) else 0,
        )
        self._jobs = jobs

    def open_store(
        self, state_dir: Path, on_error: Callable[[str], None]
    ) -> AbstractAsyncContextManager[Any]:
        if self.fleet:
            from automationd.store.pg.store import open_pg

            return open_pg(self.config, self.leases, clock=self._clock, on_error=on_error)
        # issue 11: a flapping disk is one failure episode (store/writer.py rule 7)
        return open_sqlite(state_dir, clock=self._clock, on_error=on_error, quiet_after=QUIET_AFTER)

    def gates(self, store: Store) -> Callable[..., ServiceGate]:
        """A fleet's service gates take from the fleet's buckets (engine/fleetgate.py)."""
        if not self.fleet:
            return ServiceGate
        from automationd.engine.fleetgate import FleetGate
        from automationd.store.pg.limits import SharedLimits
        from automationd.store.pg.store import PgStore

        assert isinstance(store, PgStore)
        return partial(FleetGate, limits=SharedLimits(store))

    def crew(
        self,
        store: Store,
        *,
        launcher: Launcher,
        scheduler: Scheduler,
        catalog: Catalog,
        report: Report,
        pool: WorkerPool,
    ) -> Crew:
        if not self.fleet:
            return SoloCrew(
                node_id=self.leases.node_id,
                store=store,
                jobs=self._jobs,
                launcher=launcher,
                report=report,
                pool=pool,
                clock=self._clock,
            )
        from automationd.engine.crew import FleetCrew
        from automationd.store.pg.fleet import PgFleet
        from automationd.store.pg.store import PgStore

        assert isinstance(store, PgStore)
        return FleetCrew(
            fleet=PgFleet(store, self.config, capacity=pool.max),
            leases=self.leases,
            store=store,
            launcher=launcher,
            scheduler=scheduler,
            catalog=catalog,
            report=report,
            pool=pool,
            clock=self._clock,
        )
