"""Whole-database work on PostgreSQL: ``automationd migrate`` (store/pg/migrate.py has the
rules) and ``store.backup`` (``pg_dump``)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg

from automationd.errors import StoreError
from automationd.store.pg.committer import pg_error
from automationd.store.pg.migrate import migrate


async def migrate_database(dsn: str) -> tuple[int, int]:
    """Returns (version before, version after); ``StoreError`` with one line otherwise."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10.0)
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


async def dump_database(dsn: str, path: str) -> int:
    """``pg_dump -Fc`` into ``path`` (which must not exist); returns its size in bytes."""
    target = Path(path)
    if await asyncio.to_thread(target.exists):
        raise StoreError(f"store.backup: {path} exists; give a new file", kind="other")
    tool = shutil.which("pg_dump") or _debian_pg_dump()
    if tool is None:
        raise StoreError("store.backup: pg_dump not found (install postgresql-client)")
    proc = await asyncio.create_subprocess_exec(
        tool, "--format=custom", f"--file={target}", f"--dbname={dsn}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise StoreError(f"store.backup: pg_dump failed: {err.decode(errors='replace').strip()}")
    return (await asyncio.to_thread(target.stat)).st_size


def _debian_pg_dump() -> str | None:
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin/pg_dump")) if root.is_dir() else []
    return str(found[-1]) if found else None
