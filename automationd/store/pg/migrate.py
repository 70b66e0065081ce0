"""PostgreSQL schema versions, applied only by ``automationd migrate`` (never by ``run``).

Why explicit: several daemons start against one database, often at once (a rolling deploy, a
reboot). If each migrated on start they would race, and a newer daemon would change the
schema under older ones still running. So ``run`` only checks: an empty or older database is
refused with "run `automationd migrate`", a newer one with "upgrade automationd".

Rules (as for SQLite, store/sqlite/migrate.py):
- ``MIGRATIONS`` is an ordered tuple of ``(version, sql)`` numbered 1..n; a released step is
  never edited, the schema changes by appending one.
- Each step runs in its own transaction together with the version bump, under a
  transaction-scoped advisory lock, so two ``migrate`` commands at once apply each step once
  and a failed step leaves the previous version in place.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from automationd.errors import StoreError

VERSION_TABLE = "automationd_schema"
_LOCK_KEY = 0x6175746F6D6174  # "automat": the advisory lock migrations hold


def _sql(name: str) -> str:
    return resources.files("automationd.store.pg").joinpath(name).read_text("utf-8")


MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _sql("schema.sql")),
    (2, _sql("limits.sql")),
)
LATEST_VERSION = MIGRATIONS[-1][0]


async def schema_version(conn: Any) -> int:
    """The database's schema version; 0 when automationd never migrated it."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", VERSION_TABLE)
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {VERSION_TABLE}")
    return int(version or 0)


async def migrate(conn: Any) -> tuple[int, int]:
    """Bring the database to ``LATEST_VERSION``; returns (version before, version after)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer NOT NULL)")
    before = current = await schema_version(conn)
    if current > LATEST_VERSION:
        raise _too_new(current)
    for version, sql in MIGRATIONS:
        if version <= current:
            continue
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                if await schema_version(conn) >= version:  # another migrate got here first
                    continue
                await conn.execute(sql)
                await conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES ($1)", version)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"schema migration to version {version} failed: {exc}") from exc
        current = version
    return before, current


async def require_current(conn: Any) -> int:
    """Refuse a database this daemon cannot run on; returns its version."""
    version = await schema_version(conn)
    if version == 0:
        raise StoreError(
            "the PostgreSQL database has no automationd schema: "
            "run `automationd migrate --config FILE` first"
        )
    if version < LATEST_VERSION:
        raise StoreError(
            f"the PostgreSQL schema is at version {version}, this automationd needs "
            f"{LATEST_VERSION}: run `automationd migrate --config FILE` first"
        )
    if version > LATEST_VERSION:
        raise _too_new(version)
    return version


def _too_new(version: int) -> StoreError:
    return StoreError(
        f"the PostgreSQL schema version {version} is newer than this automationd supports "
        f"(version {LATEST_VERSION}); upgrade automationd"
    )
