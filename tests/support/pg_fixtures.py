"""PostgreSQL fixtures (a pytest plugin, loaded by tests/conftest.py).

``pg_server``: one real server for the whole session (tests/support/postgres.py), skipped
with a clear message only where no server binary exists. ``pg_dsn``: a fresh database on it,
migrated; ``pg_dsn_empty``: a fresh database with no schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.postgres import PgServer, find_bindir


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb): apt-get install postgresql")
    server = PgServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn_empty(pg_server: PgServer) -> str:
    return pg_server.create_db()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    from automationd.store.pg.schema_cmd import migrate_database

    dsn = pg_server.create_db()
    asyncio.run(migrate_database(dsn))
    return dsn
