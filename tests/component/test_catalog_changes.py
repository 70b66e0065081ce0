"""Job changes (engine/catalog.py, engine/edit.py) against a real store whose commits a test
holds or fails: one change at a time, a job placed on the scheduler only while it is the
table's, and nothing changed in memory by a change whose row was not stored."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from automationd.clock import SystemClock
from automationd.config.load import load_config
from automationd.engine.catalog import Catalog
from automationd.engine.edit import Editor, Update
from automationd.engine.scheduler import Scheduler
from automationd.engine.services import ServiceRegistry
from automationd.errors import StoreError
from tests.support.engine import Rig, engine_rig, flaky, hold


def job(name: str, **keys: Any) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": "@every 1h",
        "action": {"type": "exec", "argv": ["true"]},
    } | keys


@asynccontextmanager
async def catalog_rig(tmp: Path) -> AsyncIterator[tuple[Catalog, Editor, Rig]]:
    """A catalog and editor over the engine rig's store, with a scheduler that places jobs on
    its wheel (its loop is not run: nothing fires)."""
    path = tmp / "automationd.toml"
    path.write_text("")
    config = load_config(path)
    clock = SystemClock()
    async with engine_rig(tmp) as rig:
        scheduler = Scheduler(
            launcher=rig.launcher,
            report=rig.report,
            store=rig.store,
            jobs=rig.jobs,
            clock=clock,
            rng=random.Random(7),
            metrics=rig.metrics,
        )
        catalog = Catalog(
            config=config,
            jobs=rig.jobs,
            store=rig.store,
            clock=clock,
            metrics=rig.metrics,
            scheduler=scheduler,
            services=ServiceRegistry(config.services, clock, rig.metrics),
        )
        catalog.load(await rig.store.job_rows())
        yield catalog, Editor(catalog=catalog, store=rig.store, clock=clock), rig


@pytest.mark.parametrize("change", ["update", "resume"])
async def test_a_job_removed_while_a_change_commits_is_not_placed_again(
    tmp_path: Path, change: str
) -> None:
    """1. Add job a (resume: and pause it). 2. Hold the store's commits; start the change (an
    update of a's schedule, or a resume), which waits for its row. 3. Remove a meanwhile;
    release the commits.
    Result: a is out of the table, off the scheduler's wheel (it would fire until a restart)
    and out of the store."""
    async with asyncio.timeout(10), catalog_rig(tmp_path) as (cat, editor, rig):
        a = await cat.add(job("a"))
        if change == "resume":
            await cat.set_paused("a", True)
        held = hold(rig.store)
        async with asyncio.TaskGroup() as tg:
            if change == "update":
                tg.create_task(editor.update(Update(name="a", patch={"schedule": "@every 2h"})))
            else:
                tg.create_task(cat.set_paused("a", False))
            await held.arrived.wait()
            removing = tg.create_task(cat.remove("a"))
            for _ in range(10):  # let the remove go as far as it can while the change waits
                await asyncio.sleep(0)
            held.release()
        assert removing.result() is a
        assert "a" not in rig.jobs
        assert a.wheel_handle is None and a.next_run is None
        assert (await rig.store.job_rows()).get("a") is None


async def test_a_change_whose_row_fails_leaves_the_job_as_it_was(tmp_path: Path) -> None:
    """With every commit failing (a full disk): a pause, a resume, a remove and an add each
    raise StoreError (the caller hears unavailable) and leave the table and the wheel as they
    were."""
    async with asyncio.timeout(10), catalog_rig(tmp_path) as (cat, _, rig):
        a = await cat.add(job("a"))
        p = await cat.add(job("p"))
        await cat.set_paused("p", True)
        disk = flaky(rig.store)
        disk.failing = True
        with pytest.raises(StoreError):
            await cat.set_paused("a", True)
        assert not a.paused and a.wheel_handle is not None
        with pytest.raises(StoreError):
            await cat.set_paused("p", False)
        assert p.paused and p.wheel_handle is None
        with pytest.raises(StoreError):
            await cat.remove("a")
        assert rig.jobs.get("a") is a and a.wheel_handle is not None
        with pytest.raises(StoreError):
            await cat.add(job("b"))
        assert "b" not in rig.jobs
        assert rig.jobs.counts() == {"enabled": 1, "paused": 1, "completed": 0}
        disk.failing = False  # the rig settles and closes the store on its way out
