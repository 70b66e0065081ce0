"""Per-job durable state: pause, completion, last scheduled fire, counters, API-added specs.

Config jobs get a row only once something about them must survive a restart (a pause, a
fire, a run), so a 100,000-job config costs no writes at start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from automationd.store.db import Database, Write

_UPSERT = (
    "INSERT INTO jobs (name, source, spec, paused, completed, last_scheduled, run_count,"
    " last_run, last_success) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
    " source=excluded.source, spec=excluded.spec, paused=excluded.paused,"
    " completed=excluded.completed, last_scheduled=excluded.last_scheduled,"
    " run_count=excluded.run_count, last_run=excluded.last_run,"
    " last_success=excluded.last_success"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRow:
    name: str
    source: str
    spec: dict[str, Any] | None = None
    paused: bool = False
    completed: bool = False
    last_scheduled: float | None = None
    run_count: int = 0
    last_run: str | None = None
    last_success: float | None = None


def w_job(row: JobRow) -> Write:
    return Write(
        _UPSERT,
        (
            row.name,
            row.source,
            json.dumps(row.spec, separators=(",", ":")) if row.spec is not None else None,
            int(row.paused),
            int(row.completed),
            row.last_scheduled,
            row.run_count,
            row.last_run,
            row.last_success,
        ),
        key=row.name,
    )


def w_job_delete(name: str) -> Write:
    return Write("DELETE FROM jobs WHERE name=?", (name,), barrier=True)


async def load_job_rows(db: Database) -> dict[str, JobRow]:
    rows = await db.fetchall("SELECT * FROM jobs")
    return {
        r["name"]: JobRow(
            name=r["name"],
            source=r["source"],
            spec=json.loads(r["spec"]) if r["spec"] else None,
            paused=bool(r["paused"]),
            completed=bool(r["completed"]),
            last_scheduled=r["last_scheduled"],
            run_count=r["run_count"],
            last_run=r["last_run"],
            last_success=r["last_success"],
        )
        for r in rows
    }
