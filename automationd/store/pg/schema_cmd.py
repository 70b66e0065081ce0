"""``automationd migrate``'s work: connect, migrate, close (store/pg/migrate.py has the rules)."""

from __future__ import annotations

from automationd.errors import StoreError
from automationd.store.pg.committer import pg_error
from automationd.store.pg.migrate import migrate
from automationd.store.pg.store import connect


async def migrate_database(dsn: str) -> tuple[int, int]:
    """Returns (version before, version after); ``StoreError`` with one line otherwise."""
    try:
        conn = await connect(dsn)
    except Exception as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {exc}", kind="io") from exc
    try:
        return await migrate(conn)
    except StoreError:
        raise
    except Exception as exc:
        raise pg_error(exc, "migrate") from exc
    finally:
        await conn.close()
