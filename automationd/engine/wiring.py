"""The run-life parts of the engine, wired once: the pool, ids, the report, attempts and the
launcher. daemon.py builds them here, and so do the component tests (tests/support/engine.py)
on a store of their own: a part added to a run's life is wired for both in one place.

No IO happens here: the store, the HTTP clients and the dead-letter count already read are
handed in, so building the parts costs nothing a test must fake.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from automationd.actions.base import HttpClients
from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.engine.attempt import AttemptTools
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.outbox import Outbox
from automationd.engine.pool import WorkerPool
from automationd.engine.report import DlqCount, Report
from automationd.fleet.leases import Leases
from automationd.obs.metrics import Metrics
from automationd.store.api import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class RunLife:
    """The parts a run's life is made of, built by ``wire_run_life``."""

    pool: WorkerPool
    ids: IdGenerator
    draining: asyncio.Event  # set when the daemon drains: no run opens another attempt
    outbox: Outbox
    dlq: DlqCount
    report: Report
    attempts: AttemptTools
    launcher: Launcher


def wire_run_life(
    *,
    clock: Clock,
    store: Store,
    http: HttpClients,
    metrics: Metrics,
    jobs: JobTable,
    workers: int,
    rng: random.Random,
    dead_letters: int = 0,
    leases: Leases | None = None,
) -> RunLife:
    """The parts, on ``store`` with ``workers`` worker slots; ``dead_letters``: the DLQ's size
    as stored; ``leases``: a fleet's (None: one daemon)."""
    pool = WorkerPool(workers)
    ids = IdGenerator(rng)
    draining = asyncio.Event()
    outbox = Outbox()
    dlq = DlqCount(metrics, dead_letters)
    report = Report(
        clock=clock,
        ids=ids,
        store=store,
        metrics=metrics,
        dlq=dlq,
        outbox=outbox,
        listening=jobs.listening,
    )
    attempts = AttemptTools(
        clock=clock, store=store, pool=pool, http=http, metrics=metrics, rng=rng, draining=draining
    )
    launcher = Launcher(clock=clock, ids=ids, attempts=attempts, report=report, leases=leases)
    return RunLife(
        pool=pool,
        ids=ids,
        draining=draining,
        outbox=outbox,
        dlq=dlq,
        report=report,
        attempts=attempts,
        launcher=launcher,
    )
