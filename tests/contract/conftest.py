"""The ``Store`` contract: every backend behind store/api.py passes the same suite.

How it works (the shape of APScheduler 4's one data-store suite): each backend has ONE
fixture, ``<name>_store``, that opens a fresh, empty store and closes it afterwards; the
``store`` fixture is parametrized over the backend names and hands each test every backend
in turn. Tests use only the ``Store`` protocol (no SQL, no private attributes), so a new
backend passes the suite unchanged.

To add a backend: write its ``<name>_store`` fixture below and add its name to ``BACKENDS``
(mark it, e.g. ``pytest.param("postgresql", marks=pytest.mark.postgresql)``, and skip inside
the fixture when its server is not there).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from automationd.core.ids import IdGenerator
from automationd.store.api import Store
from automationd.store.sqlite.store import open_sqlite
from tests.support.postgres import PgServer

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh SQLite store in its own state directory."""
    async with open_sqlite(tmp_path / "state", close_timeout=5.0) as store:
        yield store


@pytest.fixture
async def postgresql_store(pg_server: PgServer) -> AsyncIterator[Store]:
    """A fresh, migrated PostgreSQL database on the session's server (tests/support/postgres.py)
    and a store on it, as a daemon alone in its fleet would open it."""
    from automationd.config.model import StoreConfig
    from automationd.fleet.leases import Leases
    from automationd.store.pg.schema_cmd import migrate_database
    from automationd.store.pg.store import open_pg

    dsn = await asyncio.to_thread(pg_server.create_db)
    await migrate_database(dsn)
    config = StoreConfig(backend="postgresql", dsn=dsn)
    async with open_pg(config, Leases("contract"), close_timeout=5.0) as store:
        yield store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    """Each backend's fresh store in turn (see the module docstring)."""
    backend: Store = request.getfixturevalue(f"{request.param}_store")
    return backend


@pytest.fixture
def ids() -> IdGenerator:
    """Time-ordered ids, as the engine makes them (a time window is an id range)."""
    return IdGenerator(random.Random(11))
