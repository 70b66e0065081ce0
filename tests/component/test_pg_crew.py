"""engine/crew.py's ``cancel_elsewhere`` on a real PostgreSQL, with a fake clock: it waits
on the injected clock, and says so when the run's holder did not cancel it in time."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg

from automationd.config.model import StoreConfig
from automationd.core.runstate import RunState
from automationd.engine.crew import CANCEL_WAIT, FleetCrew
from automationd.errors import AdminError
from automationd.fleet.leases import Leases
from automationd.store.pg.fleet import PgFleet
from automationd.store.rows import w_run
from tests.component.test_pg_store import pg_store, run_row
from tests.support.clock import FakeClock


async def held_elsewhere(dsn: str, run_id: str) -> None:
    """Another daemon (n2) holds the run now."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE runs SET owner='n2', lease=9 WHERE id=$1", run_id)
    finally:
        await conn.close()


async def test_a_cancel_its_holder_ignores_is_unavailable_at_the_deadline(pg_dsn: str) -> None:
    """1. Run A and run B are running, held by daemon n2. 2. n1 cancels each elsewhere; the
    fake clock moves past CANCEL_WAIT. B ends meanwhile (n2 did cancel it), A does not.
    Result: B's cancel answers at once, A's is ``unavailable`` naming the wait, not a
    success; no real time is waited."""
    leases = Leases("n1", token=7, shares_work=True)
    clock = FakeClock()
    async with asyncio.timeout(20), pg_store(pg_dsn, leases) as store:
        a, b = (
            run_row(1, state=RunState.RUNNING, lease=7),
            run_row(2, state=RunState.RUNNING, lease=7),
        )
        for run in (a, b):
            leases.hold(run.id, 7)
        await store.commit([w_run(a), w_run(b)])
        for run in (a, b):
            leases.release(run.id)
            await held_elsewhere(pg_dsn, run.id)
        fleet = PgFleet(
            store, StoreConfig(backend="postgresql", dsn=pg_dsn, node_id="n1"), capacity=4
        )
        await fleet.open()
        unused: Any = None
        crew = FleetCrew(
            fleet=fleet, leases=leases, store=store, launcher=unused, scheduler=unused,
            catalog=unused, report=unused, pool=unused, clock=cast(Any, clock),
        )  # fmt: skip
        try:
            async with asyncio.TaskGroup() as tg:
                cancel_a = tg.create_task(crew.cancel_elsewhere(a.id))
                cancel_b = tg.create_task(crew.cancel_elsewhere(b.id))
                while clock.sleepers < 2:  # noqa: ASYNC110 - a fake clock offers no event
                    await asyncio.sleep(0.01)
                conn = await asyncpg.connect(pg_dsn)
                await conn.execute("UPDATE runs SET state='cancelled' WHERE id=$1", b.id)
                await conn.close()
                while not cancel_a.done():
                    clock.advance(1.0)
                    await asyncio.sleep(0.01)
        except* AdminError as group:
            (refused,) = group.exceptions
        finally:
            await fleet.close()
        assert isinstance(refused, AdminError) and refused.code == "unavailable"
        assert f"within {CANCEL_WAIT:g} s" in refused.message
        assert cancel_b.result() is True
        assert clock.monotonic() - 1000.0 >= CANCEL_WAIT
