"""Per-job durable state: pause, completion, last scheduled fire, counters, API-added specs.

Config jobs get a row only once something about them must survive a restart (a pause, a
fire, a run), so a 100,000-job config costs no writes at start-up. An API job's spec is
stored as compact JSON and read back as that text (``spec_json``): the catalog decodes all
of them at once and the job keeps the text, not a dict tree, as the form it persists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from automationd.store.write import Stmt, Write


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRow:
    name: str
    source: str
    spec: dict[str, Any] | None = None
    spec_json: str | None = None  # the stored spec as read, still JSON (see StoredJobs)
    paused: bool = False
    completed: bool = False
    last_scheduled: float | None = None
    run_count: int = 0
    last_run: str | None = None
    last_success: float | None = None
    revision: int = 1  # +1 on every change of the job's definition
    owner: int | None = None  # uid of the socket peer that added it (API jobs)
    override: bool = False  # a config job changed over the socket (spec: its table; None:
    # removed): the change survives reloads until the override is dropped


def w_job(row: JobRow) -> Write:
    """JOB params: name, source, spec, paused, completed, last_scheduled, run_count,
    last_run, last_success, revision, owner, override."""
    return w_job_fields(
        row.name,
        row.source,
        json.dumps(row.spec, separators=(",", ":")) if row.spec is not None else row.spec_json,
        row.paused,
        row.completed,
        row.last_scheduled,
        row.run_count,
        row.last_run,
        row.last_success,
        row.revision,
        row.owner,
        row.override,
    )


def w_job_fields(
    name: str,
    source: str,
    spec_json: str | None,
    paused: bool,
    completed: bool,
    last_scheduled: float | None,
    run_count: int,
    last_run: str | None,
    last_success: float | None,
    revision: int,
    owner: int | None,
    override: bool,
) -> Write:
    """``w_job`` from the row's parts, with no ``JobRow`` record: a job's counters are
    written twice per run (its creation and its end)."""
    return Write(
        Stmt.JOB,
        (
            name,
            source,
            spec_json,
            int(paused),
            int(completed),
            last_scheduled,
            run_count,
            last_run,
            last_success,
            revision,
            owner,
            int(override),
        ),
        key=name,
    )


def w_job_state(row: JobRow) -> Write:
    """The job's row as an operator change (pause, resume, add, completion): see
    ``Stmt.JOB_STATE``. A barrier, so it lands after any counter write of the same batch."""
    return w_job(row)._replace(stmt=Stmt.JOB_STATE, barrier=True)


def w_job_delete(name: str) -> Write:
    return Write(Stmt.JOB_DELETE, (name,), barrier=True)


JOB_COLUMNS = (
    "name, source, spec, paused, completed, last_scheduled, run_count, last_run, last_success,"
    " revision, owner, override"
)
_FRESH = (0, 0, None, 0, None, None)  # paused … last_success of a row nothing happened to
_STATE = slice(3, 9)  # those columns


class ApiSpec(NamedTuple):
    """One stored API job as the catalog loads it: its spec text, whether it has state (then
    ``StoredJobs.get`` has its row), and the columns every API job sets (no row needed). A
    tuple: 100,000 of them are made at start-up."""

    name: str
    text: str
    has_state: bool
    revision: int
    owner: int | None


class StoredJobs:
    """The jobs table as read at start-up (columns in the order of ``JOB_COLUMNS``). Rows stay
    as the driver returned them and become a ``JobRow`` only when asked for: with 100,000 API
    jobs a record each would cost 0.2 s and 10 MB, while the catalog needs just each one's
    name and spec, and state only if it has any."""

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        self._rows = {r[0]: r for r in rows}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, name: str) -> JobRow | None:
        r = self._rows.get(name)
        if r is None:
            return None
        return JobRow(
            name=r[0],
            source=r[1],
            spec_json=r[2] or None,
            paused=bool(r[3]),
            completed=bool(r[4]),
            last_scheduled=r[5],
            run_count=r[6],
            last_run=r[7],
            last_success=r[8],
            revision=r[9],
            owner=r[10],
            override=bool(r[11]),
        )

    def take_api_specs(self) -> list[ApiSpec]:
        """Every API job stored with a spec. The rows of those without state are dropped
        here (``get`` then answers None, as for a job that has no row), so their memory is
        free again before the catalog builds the jobs."""
        out: list[ApiSpec] = []
        kept: dict[str, Sequence[Any]] = {}
        for name, r in self._rows.items():
            if r[1] == "api" and r[2]:
                has_state = tuple(r[_STATE]) != _FRESH
                out.append(ApiSpec(name, r[2], has_state, r[9], r[10]))
                if not has_state:
                    continue
            kept[name] = r
        self._rows = kept
        return out
