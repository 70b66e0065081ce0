"""Forward-only schema migrations tracked by ``PRAGMA user_version``.

Rules:
- ``MIGRATIONS`` is an ordered tuple of ``(version, sql)``; versions start at 1 and increase by
  one. Version 1 is ``store/schema.sql``. A step is never edited once released; change the
  schema by appending a step.
- Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with the
  ``user_version`` bump, so a crash mid-migration leaves the database at the previous version,
  never half-way.
- A database whose ``user_version`` is newer than the code knows is refused with a
  ``StoreError`` naming both versions: an older daemon must not write rows it does not
  understand (a downgrade is done by restoring a backup, not by guessing).

These functions are synchronous and take a plain ``sqlite3.Connection`` in autocommit mode
(``isolation_level=None``): ``store.py`` runs them on the writer connection's thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from importlib import resources

from automationd.errors import StoreError

Step = tuple[int, str]


def _schema_v1() -> str:
    return resources.files("automationd.store.sqlite").joinpath("schema.sql").read_text("utf-8")


MIGRATIONS: tuple[Step, ...] = (
    (1, _schema_v1()),
    # 2: the fencing token of the daemon owning a run (several daemons share PostgreSQL; on
    # SQLite it stays 0, but the row has one shape on every backend).
    (2, "ALTER TABLE runs ADD COLUMN lease INTEGER NOT NULL DEFAULT 0;"),
    # 3: previews, apply and undo (SPEC §7.2): a run's plan, its rolled-back target count, the
    # attempt count its latest rollback began after (recovery counts that pass's undo tries),
    # the phase a dead letter failed in (an undo failure is retried by undoing again), and the
    # apply run of a preview found by its origin (partial: only apply runs are indexed).
    (
        3,
        "ALTER TABLE runs ADD COLUMN plan TEXT;"
        " ALTER TABLE runs ADD COLUMN targets_rolled_back INTEGER NOT NULL DEFAULT 0;"
        " ALTER TABLE runs ADD COLUMN undo_from INTEGER;"
        " ALTER TABLE dlq ADD COLUMN phase TEXT NOT NULL DEFAULT 'perform';"
        " CREATE INDEX IF NOT EXISTS runs_apply_of ON runs (origin) WHERE trigger = 'apply';",
    ),
    # 4 (issue 14): a job's revision, owner (uid) and override flag; the audit trail.
    (
        4,
        """
        ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE jobs ADD COLUMN owner INTEGER;
        ALTER TABLE jobs ADD COLUMN override INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE IF NOT EXISTS audit (
            id      TEXT PRIMARY KEY,
            at      REAL NOT NULL,
            via     TEXT NOT NULL,
            uid     INTEGER,
            user    TEXT,
            cmd     TEXT NOT NULL,
            target  TEXT,
            job     TEXT,
            args    TEXT,
            digest  TEXT,
            outcome TEXT NOT NULL,
            error   TEXT
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS audit_by_job ON audit (job, id);
        """,
    ),
    # 5: one run per (job, due time), whoever makes it (the scheduler, a misfire catch-up, a
    # backfill; on PostgreSQL also a second leader for a split second), as on PostgreSQL.
    (
        5,
        "CREATE UNIQUE INDEX IF NOT EXISTS runs_fire ON runs (job, scheduled_for)"
        " WHERE trigger IN ('schedule', 'misfire', 'backfill') AND scheduled_for IS NOT NULL;",
    ),
    # 6: runs that did not succeed, by state (newest first within one): the web console's
    # "last failures" and a state filter stay index reads among a million succeeded runs.
    # Partial, so the common succeeded run never touches it (store/runpages.py UNSUCCESSFUL).
    (
        6,
        "CREATE INDEX IF NOT EXISTS runs_unsuccessful ON runs (state) WHERE state IN"
        " ('failed', 'partial', 'cancelled', 'skipped', 'previewed', 'stale', 'rolled_back');",
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, steps: Sequence[Step] = MIGRATIONS) -> int:
    """Bring the database up to the newest step and return the resulting version.

    Raises ``StoreError`` when the database is newer than ``steps`` or a step fails.
    """
    _check_steps(steps)
    latest = steps[-1][0] if steps else 0
    current = user_version(conn)
    if current > latest:
        raise StoreError(
            f"database schema version {current} is newer than this automationd supports "
            f"(version {latest}); upgrade automationd or restore an older backup"
        )
    for version, sql in steps:
        if version <= current:
            continue
        _apply(conn, version, sql)
        current = version
    return current


def _apply(conn: sqlite3.Connection, version: int, sql: str) -> None:
    # executescript() runs the text verbatim; with isolation_level=None Python adds no
    # implicit COMMIT around it, so the BEGIN/COMMIT below really bracket the step.
    script = f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {int(version)};\nCOMMIT;"
    try:
        conn.executescript(script)
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"schema migration to version {version} failed: {exc}") from exc


def _check_steps(steps: Sequence[Step]) -> None:
    for i, (version, _) in enumerate(steps, start=1):
        if version != i:
            raise StoreError(f"migration steps must be numbered 1..n; step {i} says {version}")
